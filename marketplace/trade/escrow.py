"""Closing a sale the buyer never funded: the seller asks, the buyer's books decide.

    seller agent                                  buyer agent (any agent its node hosts)
    EscrowQuery(countersigned agreement) ───────▶  Escrowed | Expired(buyer-signed expiry)

A seller books a sale when it countersigns, before the buyer has the countersignature. When
that reply is lost (the seller died as it sent it, the buyer gave up waiting and went to the
next bid) the buyer never escrows and never sends the task. So a seller that has had no task
for a sale `ESCROW_QUERY_AFTER_MS` after its agreed-at asks the buyer, whose books alone know
whether the price is held. The buyer's node answers for it: books holding the agreement say
`Escrowed` (the task, or a receipt, will follow); books that never saw it record a signed
`Expiry` in the transaction that makes them refuse to escrow it later, and answer with it.
Both books then close the agreement as ``expired``, nothing owed, to the micro-credit.
"""

from __future__ import annotations

import logging

from aaex_agents import Context, Identity, Message
from aaex_agents.errors import AaexError

from ..contracts.agreement import SignedAgreement
from ..contracts.errors import AlreadySettled, ContractRejected, EscrowHeld, LedgerError
from ..contracts.expiry import SignedExpiry
from ..contracts.ledger import Ledger
from .negotiation import Decline

logger = logging.getLogger(__name__)

ESCROW_QUERY_AFTER_MS = 5_000
"""How long after the agreed-at a seller with no task asks the buyer whether it escrowed.
An honest buyer escrows and sends the task within milliseconds of the countersignature, so
asking earlier only costs a message; asking later leaves an orphan sale open longer."""


class EscrowQuery(Message, type="market.escrow_query/1"):
    """A seller asks the buyer whether it escrowed an agreement both signed."""

    agreement: bytes
    """The countersigned agreement (`SignedAgreement.to_wire`)."""


class Escrowed(Message, type="market.escrowed/1"):
    """The buyer's books hold the agreement: its task or its receipt will follow."""

    agreement_id: str


class Expired(Message, type="market.expired/1"):
    """The buyer's books close the agreement unfunded, by the expiry the buyer signed."""

    expiry: bytes
    """`SignedExpiry.to_wire`."""


async def answer_escrow_query(ledger: Ledger, buyer: Identity, seller: str | None,
                              msg: EscrowQuery, now_ms: int) -> Escrowed | Expired | Decline:
    """What the buyer `buyer` answers `seller` about the agreement in `msg`."""
    try:
        signed = SignedAgreement.from_wire(msg.agreement)
    except ContractRejected as exc:
        return Decline(dialogue="", reason="bad_agreement", detail=str(exc))
    agreement = signed.agreement
    if agreement.buyer != buyer.address or agreement.seller != seller:
        return Decline(dialogue=agreement.dialogue_id, reason="unknown_agreement",
                       detail="the agreement is not between you and this agent")
    kept = await ledger.expiry(signed.id)
    if kept is None:
        expiry = SignedExpiry.create(signed, buyer, at_ms=now_ms)
        try:  # one transaction decides: escrowed, or closed and never escrowable again
            await ledger.close_expired(signed, expiry, role="buyer")
        except (EscrowHeld, AlreadySettled):
            return Escrowed(agreement_id=signed.id)
        logger.info("agreement %s with %s expired: never escrowed", signed.id[:12],
                    agreement.seller, extra={"event": "expired", "agreement_id": signed.id})
        kept = expiry
    return Expired(expiry=kept.to_wire())


async def ask_escrow(ctx: Context, ledger: Ledger, signed: SignedAgreement, *,
                     timeout: float = 5.0) -> str:
    """Ask the buyer of our sale `signed` whether it escrowed; close it if it never will.

    Returns ``escrowed``, ``expired`` or ``unanswered`` (ask again on a later pass).
    """
    try:
        reply = await ctx.ask(signed.agreement.buyer, EscrowQuery(agreement=signed.to_wire()),
                              timeout=timeout)
    except (AaexError, TimeoutError) as exc:
        logger.debug("escrow query for %s unanswered: %s", signed.id[:12], exc)
        return "unanswered"
    if isinstance(reply, Escrowed) and reply.agreement_id == signed.id:
        return "escrowed"
    if not isinstance(reply, Expired):
        return "unanswered"
    try:
        expiry = SignedExpiry.from_wire(reply.expiry)
        await ledger.close_expired(signed, expiry, role="seller")
    except AlreadySettled:  # a receipt closed it meanwhile
        return "escrowed"
    except ContractRejected as exc:
        logger.warning("expiry from %s refused: %s", signed.agreement.buyer, exc)
        return "unanswered"
    except LedgerError as exc:
        logger.warning("expiry of %s not booked yet: %s", signed.id[:12], exc)
        return "unanswered"
    logger.info("sale %s expired: the buyer never escrowed it", signed.id[:12],
                extra={"event": "sale_expired", "agreement_id": signed.id})
    return "expired"
