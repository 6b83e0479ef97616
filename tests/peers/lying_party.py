"""`aaex` whose agents sign facts that lie: a dishonest partner, for the dispute tests.

    python -m tests.peers.lying_party late|zero_tokens|fast_clock|forged_payment \
        --log-format json node run ...

Fault injection, not a mock: the node, its books and its signatures are real; only the
facts one side signs are changed before it signs them. As a buyer, ``late`` claims the result
arrived 1 ms past the agreed latency (a breach: nothing paid, the penalty owed) and
``zero_tokens`` that a metered sale used no tokens (0 released). As a seller, ``fast_clock``
signs every delivery as if the work had taken 1 ms, however long it took. ``forged_payment``
adds to every payment it signs a signature of the partner made with another key, so the
payment looks signed by both.
"""

from __future__ import annotations

import sys
from typing import Any

from aaex_agents import Identity
from marketplace.cli.main import main
from marketplace.contracts.agreement import Agreement
from marketplace.contracts.payment import SignedPayment
from marketplace.contracts.receipt import Receipt, make_receipt
from marketplace.contracts.sla import Delivery
from marketplace.trade import delegation, selling


def _lying_receipt(mode: str) -> Any:
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


def _fast_clock(sign: Any) -> Any:
    def sign_delivery(identity: Identity, agreement_id: str, result: dict[str, Any],
                      started_at_ms: int, finished_at_ms: int,
                      provenance: Any = None) -> selling.Deliver:
        return sign(identity, agreement_id, result, finished_at_ms - 1, finished_at_ms,
                    provenance)
    return sign_delivery


def _forging(signed_by: Any) -> Any:
    def sign_and_forge(self: SignedPayment, party: Identity) -> SignedPayment:
        signed: SignedPayment = signed_by(self, party)
        partner = self.payment.partner_of(party.address)
        fake = Identity.generate().sign(self.payment.signing_bytes()).hex()
        return signed.model_copy(update={"signatures": {**signed.signatures, partner: fake}})
    return sign_and_forge


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "forged_payment":
        SignedPayment.signed_by = _forging(SignedPayment.signed_by)  # type: ignore[method-assign]
    elif mode == "fast_clock":
        selling.sign_delivery = _fast_clock(selling.sign_delivery)  # type: ignore[assignment]
    else:
        delegation.make_receipt = _lying_receipt(mode)  # type: ignore[assignment]
    sys.exit(main(sys.argv[2:]))
