"""`aaex` whose buyer signs receipts that lie about the delivery: a dishonest partner.

    python -m tests.peers.lying_buyer late|zero_tokens --log-format json node run --config ...

Fault injection, not a mock: the node, its books and its signatures are real; only the
delivery facts the buyer's receipts state are changed before it signs them. ``late`` claims
the result arrived 1 ms past the agreed latency (a breach: nothing paid, the penalty owed),
``zero_tokens`` claims a metered sale used no tokens (0 released).
"""

from __future__ import annotations

import sys
from typing import Any

from marketplace.cli.main import main
from marketplace.contracts.agreement import Agreement
from marketplace.contracts.receipt import Receipt, make_receipt
from marketplace.contracts.sla import Delivery
from marketplace.trade import delegation


def _lie(mode: str) -> Any:
    def lying_receipt(agreement: Agreement, delivery: Delivery | None, *,
                      issued_at_ms: int) -> Receipt:
        if delivery is not None and mode == "late":
            delivery = delivery.model_copy(update={
                "finished_at_ms": delivery.started_at_ms + agreement.terms.max_latency_ms + 1})
        elif delivery is not None and delivery.usage is not None and mode == "zero_tokens":
            delivery = delivery.model_copy(update={"usage": delivery.usage.model_copy(
                update={"input_tokens": 0, "output_tokens": 0})})
        return make_receipt(agreement, delivery, issued_at_ms=issued_at_ms)
    return lying_receipt


if __name__ == "__main__":
    delegation.make_receipt = _lie(sys.argv[1])  # type: ignore[assignment]
    sys.exit(main(sys.argv[2:]))
