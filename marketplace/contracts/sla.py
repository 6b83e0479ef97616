"""The SLA check: delivery facts plus agreed terms give a verdict and who gets what.

One pure function decides, so the buyer writing a receipt, the ledger settling it and any
third party auditing it reach the same verdict from the same numbers.

Money moves like this (the buyer's price is held in escrow on the buyer's books at
agreement; the penalty is a debt the seller owes on its own books, see docs/settlement.md):

=============  ================  ====================  ================================
verdict        seller gets       buyer gets            the seller owes the buyer
=============  ================  ====================  ================================
met            price             nothing               nothing
breached       nothing           price back            the penalty
not_delivered  nothing           price back            the penalty
=============  ================  ====================  ================================

A late result is a breach however late: the agreement priced the deadline, and a partial
payment scale would be a second negotiation nobody signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents.errors import UsageError

from .agreement import Agreement

Verdict = Literal["met", "breached", "not_delivered"]
"""The outcome a receipt states."""


class Delivery(BaseModel):
    """What the buyer observed: the result's hash and when the work started and arrived.

    Both times are the buyer's own clock: `started_at_ms` when it dispatched the task,
    `finished_at_ms` when a result whose hash it checked arrived. The seller's reported
    timings (in its `Deliver` message) are informative; the buyer's measurement is signed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    result_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    """sha256 (hex) of the result as received."""
    started_at_ms: int = Field(gt=0)
    finished_at_ms: int = Field(gt=0)


@dataclass(frozen=True, slots=True)
class SlaOutcome:
    """The verdict, the measurement behind it, and the three amounts it moves."""

    verdict: Verdict
    latency_ms: int | None
    """Measured latency; None when nothing was delivered."""
    release: int
    """Escrow paid to the seller."""
    refund: int
    """Escrow returned to the buyer."""
    penalty: int
    """The seller's bond paid to the buyer."""
    reasons: tuple[str, ...] = ()
    """For a breach: which promise failed, in words."""


def check_sla(agreement: Agreement, delivery: Delivery | None) -> SlaOutcome:
    """Judge `delivery` (None: nothing arrived) against `agreement`'s terms.

    Raises:
        UsageError: the times are impossible (finished before started, or started before
            the agreement was made); a receipt built from them would be refused.
    """
    terms = agreement.terms
    if delivery is None:
        return SlaOutcome("not_delivered", None, release=0, refund=terms.price,
                          penalty=terms.penalty, reasons=("no result arrived",))
    if delivery.started_at_ms < agreement.agreed_at_ms:
        raise UsageError(f"delivery started at {delivery.started_at_ms}, before the agreement "
                         f"was made at {agreement.agreed_at_ms}")
    if delivery.finished_at_ms < delivery.started_at_ms:
        raise UsageError(f"delivery finished at {delivery.finished_at_ms}, before it started "
                         f"at {delivery.started_at_ms}")
    latency = delivery.finished_at_ms - delivery.started_at_ms
    reasons = []
    if latency > terms.max_latency_ms:
        reasons.append(f"latency {latency} ms > agreed {terms.max_latency_ms} ms")
    if delivery.finished_at_ms > terms.deadline_ms:
        reasons.append(f"arrived {delivery.finished_at_ms - terms.deadline_ms} ms after the "
                       "deadline")
    if reasons:
        return SlaOutcome("breached", latency, release=0, refund=terms.price,
                          penalty=terms.penalty, reasons=tuple(reasons))
    return SlaOutcome("met", latency, release=terms.price, refund=0, penalty=0)
