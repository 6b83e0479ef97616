"""Payments made outside the market, signed by both partners over the market protocol.

One operator records the bank transfer (`aaex account settle`): its node signs the
`Payment` as our agent and sends it (`market.payment/1`). With one signature it is an offer:
the partner's node keeps it until its own operator records the same payment (same payer,
payee, amount and reference), whose node then countersigns that very offer, records it and
sends it back complete; each node records a complete payment once it checked both
signatures. Until then `aaex account reconcile` lists it as pending on both sides.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from aaex_agents import Message

from ..contracts.errors import ContractRejected, LedgerError
from ..contracts.ledger import Ledger
from ..contracts.payment import SignedPayment
from .negotiation import Decline

logger = logging.getLogger(__name__)

_KIND = "payment"
"""What `Ledger.keep_offer` files our half-signed payments under."""

OFFERS_KEPT = 1_000
"""Half-signed payments kept at once, received and sent together (oldest dropped first)."""
OFFERS_PER_PARTNER = 16
"""Half-signed payments kept from one partner agent (its oldest dropped first), so no
partner crowds out another's."""


class PaymentNotice(Message, type="market.payment/1"):
    """A payment with the signatures gathered so far."""

    payment: dict[str, Any]
    """`SignedPayment` as JSON."""


class PaymentTaken(Message, type="market.payment_taken/1"):
    """What the partner did with a payment: ``recorded`` or ``offer_kept``."""

    payment_id: str
    outcome: str


def same_terms(a: SignedPayment, b: SignedPayment) -> bool:
    """Whether two payments record the same transfer (nonce and time aside)."""
    x, y = a.payment, b.payment
    return (x.payer, x.payee, x.amount, x.currency, x.reference) == (
        y.payer, y.payee, y.amount, y.currency, y.reference)


class PaymentDesk:
    """Half-signed payments between our agents and their partners, and recording complete ones.

    `offers` came from partners and wait for our operator; `sent` are ours and wait for the
    partner's. Both are kept on the ledger's file as well (`Ledger.keep_offer`), and `load`
    reads them back, so a node that restarts still has them.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.offers: dict[str, SignedPayment] = {}
        """Partners' offers by payment id, oldest first."""
        self.sent: dict[str, SignedPayment] = {}
        """Our offers by payment id, oldest first."""

    def pending(self, ours: str, partner: str) -> list[tuple[str, SignedPayment]]:
        """(``ours`` | ``theirs``: whose signature it carries, payment) between the two."""
        return [(side, p) for side, kept in (("ours", self.sent), ("theirs", self.offers))
                for p in kept.values() if {p.payment.payer, p.payment.payee} == {ours, partner}]

    def matching(self, wanted: SignedPayment) -> SignedPayment | None:
        """A partner's offer recording the same transfer as `wanted`, if one waits."""
        return next((p for p in self.offers.values() if same_terms(p, wanted)), None)

    async def load(self) -> None:
        """Read back the half-signed payments kept before a restart."""
        for _, side, body in await self._ledger.kept_offers(_KIND):
            signed = SignedPayment.model_validate(body)
            (self.sent if side == "ours" else self.offers)[signed.id] = signed

    async def keep_sent(self, signed: SignedPayment) -> None:
        """Remember our half-signed `signed` until the partner signs it."""
        await self._keep(self.sent, "ours", signed)

    async def recorded(self, signed: SignedPayment) -> None:
        """`signed` is on our books: it is pending no more."""
        self.offers.pop(signed.id, None)
        self.sent.pop(signed.id, None)
        await self._ledger.drop_offer(_KIND, signed.id)

    async def receive(self, me: str, sender: str, msg: PaymentNotice) -> PaymentTaken | Decline:
        """A partner's payment to or from `me`: recorded when both signed, else kept."""
        try:
            signed = SignedPayment.model_validate(msg.payment)
            p = signed.payment
            if {p.payer, p.payee} != {me, sender}:
                return Decline(dialogue="", reason="not_a_party",
                               detail="a payment between you and the agent you address")
            signed.verify(complete=False)
            if sender not in signed.signatures:
                return Decline(dialogue="", reason="payment_refused",
                               detail="the payment does not carry your signature")
            if me not in signed.signatures:
                await self._keep(self.offers, "theirs", signed)
                logger.info("payment offer %s from %s kept", signed.id[:12], sender,
                            extra={"event": "payment_offered", "payment_id": signed.id})
                return PaymentTaken(payment_id=signed.id, outcome="offer_kept")
            await self._ledger.record_payment(signed, me)
        except (ValidationError, ContractRejected) as exc:
            logger.warning("payment from %s refused: %s", sender, exc,
                           extra={"event": "payment_refused"})
            return Decline(dialogue="", reason="payment_refused", detail=str(exc)[:200])
        except LedgerError as exc:
            return Decline(dialogue="", reason="payment_refused", detail=str(exc)[:200])
        await self.recorded(signed)
        return PaymentTaken(payment_id=signed.id, outcome="recorded")

    async def _keep(self, kept: dict[str, SignedPayment], side: str,
                    signed: SignedPayment) -> None:
        p = signed.payment
        pair = {p.payer, p.payee}
        same = [i for i, o in kept.items() if {o.payment.payer, o.payment.payee} == pair]
        dropped = same[:max(0, len(same) - OFFERS_PER_PARTNER + 1)]
        for payment_id in dropped:
            kept.pop(payment_id)
        kept.pop(signed.id, None)
        kept[signed.id] = signed
        while len(kept) > OFFERS_KEPT:
            dropped.append(next(iter(kept)))
            kept.pop(dropped[-1])
        for payment_id in dropped:
            await self._ledger.drop_offer(_KIND, payment_id, side)
        await self._ledger.keep_offer(_KIND, signed.id, side, signed.model_dump(mode="json"))
