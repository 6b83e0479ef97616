"""Disputes between two nodes: raised by one party, checked and recorded by the other.

A party that finds the other's signed facts contradicting its own (marketplace.contracts.
dispute) records a signed `Dispute` on its books and sends it (`market.dispute/1`) with the
seller's signed delivery in evidence. The partner's node checks it exactly as an auditor
would (signed by a party, conflicts borne out by the evidence) before recording it, so a
forged or invented dispute moves nothing. A `Resolution` travels the same way
(`market.resolution/1`): signed by one party it is an offer, kept until the other signs the
same terms (`aaex dispute resolve`); signed by both, or by the arbiter the agreement names,
it ends the dispute on each book that receives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from aaex_agents import Agent, Context, Identity, Message
from aaex_agents.errors import AaexError

from ..contracts.dispute import Dispute, SignedDispute, SignedResolution
from ..contracts.errors import ContractRejected, LedgerError, UnknownAgreement
from ..contracts.ledger import Ledger
from .negotiation import Decline

logger = logging.getLogger(__name__)

OFFERS_KEPT = 1_000
"""Resolution offers kept from partners at once (oldest dropped first)."""
_KIND = "resolution"
"""What `Ledger.keep_offer` files partners' resolution offers under."""
_UNHEARD = "dispute_unheard"
"""What `Ledger.keep_offer` files our disputes the partner could not be told of under."""


class DisputeRecorder(Protocol):
    """Books that can hold an agreement as disputed (a `Ledger`)."""

    async def record_dispute(self, dispute: SignedDispute,
                             delivery: Mapping[str, Any] | None = None) -> bool:
        """Record the dispute once; True when it is new."""

    async def keep_offer(self, kind: str, key: str, side: str, body: dict[str, Any]) -> None:
        """Keep a note that waits for the partner (here: a dispute it has not heard of)."""


class DisputeNotice(Message, type="market.dispute/1"):
    """A party's signed dispute, with the seller's signed delivery in evidence."""

    dispute: bytes
    """`SignedDispute.to_wire`."""
    delivery: dict[str, Any] | None = None


class DisputeTaken(Message, type="market.dispute_taken/1"):
    """The partner checked the dispute and recorded it on its books."""

    agreement_id: str


class ResolutionNotice(Message, type="market.resolution/1"):
    """A resolution with the signatures gathered so far."""

    resolution: dict[str, Any]
    """`SignedResolution` as JSON."""


class ResolutionTaken(Message, type="market.resolution_taken/1"):
    """What the partner did with a resolution: ``resolved`` or ``offer_kept``."""

    agreement_id: str
    outcome: str


async def raise_dispute(ctx: Context, ledger: DisputeRecorder | None, identity: Identity,
                        dispute: Dispute,
                        delivery: dict[str, Any] | None, partner: str) -> SignedDispute:
    """Sign `dispute` as `identity`, record it on our books, and tell `partner`.

    The money stays held from here. A partner that cannot be reached is told again by the
    node's recovery pass (`resend_disputes`) until it answers; meanwhile `aaex account
    reconcile` shows the line as ``disputed`` on our side.

    Raises:
        ContractRejected, LedgerError: our own books refused it (nothing was sent).
    """
    signed = SignedDispute.create(dispute, identity)
    if ledger is not None:
        await ledger.record_dispute(signed, delivery)
    fields = ", ".join(c.field for c in dispute.conflicts)
    logger.warning("agreement %s disputed with %s: %s", dispute.agreement_id[:12], partner,
                   fields, extra={"event": "disputed", "agreement_id": dispute.agreement_id})
    if not await _tell(ctx, partner, signed, delivery) and ledger is not None:
        await ledger.keep_offer(_UNHEARD, dispute.agreement_id, "ours", {"partner": partner})
    return signed


async def _tell(ctx: Context, partner: str, signed: SignedDispute,
                delivery: dict[str, Any] | None) -> bool:
    """Send `partner` our dispute; False when it could not be reached (tell it again)."""
    try:
        reply = await ctx.ask(partner, DisputeNotice(dispute=signed.to_wire(), delivery=delivery),
                              timeout=5)
    except (AaexError, TimeoutError) as exc:
        logger.info("dispute %s not delivered to %s: %s", signed.id[:12], partner, exc)
        return False
    if not isinstance(reply, DisputeTaken):  # an answer: sending it again changes nothing
        logger.warning("the partner did not record dispute %s: %s", signed.id[:12], reply)
    return True


async def resend_disputes(ledger: Ledger, agents: Mapping[str, Agent],
                          context: Callable[[Agent], Context]) -> int:
    """Tell partners of the disputes our hosted `agents` raised that they have not heard of.

    Returns how many were delivered now. A dispute resolved meanwhile is not sent again.
    """
    told = 0
    unheard = await ledger.kept_offers(_UNHEARD)
    records = {r.signed.id: r for r in await ledger.disputes()} if unheard else {}
    for agreement_id, _, note in unheard:
        record = records.get(agreement_id)
        agent = agents.get(record.dispute.dispute.raised_by) if record is not None else None
        if record is None or agent is None or record.resolution is not None:
            await ledger.drop_offer(_UNHEARD, agreement_id)
            continue
        if await _tell(context(agent), note["partner"], record.dispute, record.delivery):
            await ledger.drop_offer(_UNHEARD, agreement_id)
            told += 1
    return told


async def answer_dispute(ledger: Ledger, me: str, sender: str,
                         msg: DisputeNotice) -> DisputeTaken | Decline:
    """Record a partner's dispute of an agreement between `me` and `sender`, if it holds."""
    try:
        signed = SignedDispute.from_wire(msg.dispute)
        agreement = (await ledger.agreement(signed.dispute.agreement_id)).agreement
        if {agreement.buyer, agreement.seller} != {me, sender} \
                or signed.dispute.raised_by != sender:
            return Decline(dialogue="", reason="not_a_party",
                           detail="you are not the other party of this agreement")
        await ledger.record_dispute(signed, msg.delivery)
    except UnknownAgreement:
        return Decline(dialogue="", reason="unknown_agreement")
    except (ContractRejected, LedgerError) as exc:
        logger.warning("dispute from %s refused: %s", sender, exc)
        return Decline(dialogue="", reason="dispute_refused", detail=str(exc)[:200])
    logger.warning("agreement %s disputed by %s", agreement_id := signed.dispute.agreement_id,
                   sender, extra={"event": "disputed", "agreement_id": agreement_id})
    return DisputeTaken(agreement_id=agreement_id)


class ResolutionDesk:
    """Resolution offers from partners, and ending disputes by complete resolutions."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.offers: dict[str, SignedResolution] = {}
        """The latest offer per agreement from a partner, until the terms are signed; kept
        on the ledger's file too (`Ledger.keep_offer`) and read back by `load`."""

    async def load(self) -> None:
        """Read back the offers kept before a restart."""
        for agreement_id, _, body in await self._ledger.kept_offers(_KIND):
            self.offers[agreement_id] = SignedResolution.model_validate(body)

    async def forget(self, agreement_id: str) -> None:
        """The dispute over `agreement_id` is resolved: its offer waits no more."""
        self.offers.pop(agreement_id, None)
        await self._ledger.drop_offer(_KIND, agreement_id)

    async def receive(self, me: str, sender: str,
                      msg: ResolutionNotice) -> ResolutionTaken | Decline:
        """Take a partner's resolution: end the dispute if complete, else keep the offer."""
        try:
            signed = SignedResolution.model_validate(msg.resolution)
            agreement_id = signed.resolution.agreement_id
            recorded = await self._ledger.agreement(agreement_id)
            if {recorded.agreement.buyer, recorded.agreement.seller} != {me, sender}:
                return Decline(dialogue="", reason="not_a_party")
            signed.verify_against(recorded, complete=False)
            if await self._ledger.dispute(agreement_id) is None:
                return Decline(dialogue="", reason="not_disputed")
            try:
                signed.verify_against(recorded)
            except ContractRejected:  # one party's offer: keep it for our operator
                await self._keep(agreement_id, signed)
                return ResolutionTaken(agreement_id=agreement_id, outcome="offer_kept")
            await self._ledger.resolve(signed)
        except UnknownAgreement:
            return Decline(dialogue="", reason="unknown_agreement")
        except (ValidationError, ContractRejected, LedgerError) as exc:
            return Decline(dialogue="", reason="resolution_refused", detail=str(exc)[:200])
        await self.forget(agreement_id)
        logger.info("dispute over %s resolved", agreement_id[:12],
                    extra={"event": "resolved", "agreement_id": agreement_id})
        return ResolutionTaken(agreement_id=agreement_id, outcome="resolved")

    async def _keep(self, agreement_id: str, offer: SignedResolution) -> None:
        self.offers.pop(agreement_id, None)
        self.offers[agreement_id] = offer
        while len(self.offers) > OFFERS_KEPT:
            await self.forget(next(iter(self.offers)))
        await self._ledger.keep_offer(_KIND, agreement_id, "theirs",
                                      offer.model_dump(mode="json"))
