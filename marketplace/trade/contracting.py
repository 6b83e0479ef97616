"""Turning a negotiated offer into an agreement both parties sign.

The buyer signs first (`buyer_signer`, wrapped by `Wallet.guard` so policy decides) and
sends ``[tag, body, buyer signature]``; the seller checks that the body states exactly its
latest offer to exactly this buyer, adds its signature (`seller_countersigner`), and returns
the `SignedAgreement` wire form, which anyone can verify with the two public keys alone.
"""

from __future__ import annotations

from aaex_agents.clock import Clock, SystemClock
from aaex_agents.identity import Identity

from ..contracts.agreement import AGREEMENT_TAG, Agreement, SignedAgreement, Terms
from ..contracts.errors import ContractRejected
from ..contracts.signing import decode_wire, encode_wire
from .errors import Refusal
from .negotiation import AgreementSigner, CallForProposals, Countersigner
from .strategies import Offer
from .task_models import task_hash as task_hash

CLOCK_TOLERANCE_MS = 60_000
"""How far the buyer's agreed-at may be from the seller's clock."""


def terms_for(cfp: CallForProposals, offer: Offer, agreed_at_ms: int) -> Terms:
    """The terms an offer stands for (its amounts as they are, times in milliseconds).

    A call carrying a data grant binds the grant's id, the action and the purpose.
    """
    return Terms(task_hash=task_hash(cfp.task), capability=cfp.capability,
                 price=offer.price, max_latency_ms=max(1, round(offer.latency_ms)),
                 deadline_ms=agreed_at_ms + max(1, round(offer.deadline_s * 1000)),
                 penalty=offer.penalty, tokens=offer.tokens, arbiter=cfp.arbiter,
                 grant=cfp.use.terms() if cfp.use is not None else None)


def buyer_signer(identity: Identity, clock: Clock | None = None) -> AgreementSigner:
    """Sign agreements as `identity` (the buyer), dated by `clock` (default: the system's)."""
    clock = clock or SystemClock()

    def sign(dialogue: str, seller: str, cfp: CallForProposals, offer: Offer) -> bytes:
        agreed_at = clock.now_ms()
        agreement = Agreement(dialogue_id=dialogue, buyer=identity.address, seller=seller,
                              terms=terms_for(cfp, offer, agreed_at), agreed_at_ms=agreed_at)
        return encode_wire(AGREEMENT_TAG, agreement, [agreement.sign(identity)])
    return sign


def seller_countersigner(identity: Identity, clock: Clock | None = None) -> Countersigner:
    """Countersign, as `identity` (the seller), only an agreement stating our own offer.

    The buyer's agreed-at must be within `CLOCK_TOLERANCE_MS` of `clock` (default: the
    system's).
    """
    clock = clock or SystemClock()

    def countersign(wire: bytes, buyer: str, cfp: CallForProposals, offer: Offer) -> bytes:
        try:
            agreement, (buyer_signature,) = decode_wire(wire, AGREEMENT_TAG, Agreement,
                                                        signatures=1)
            agreement.check_signature(buyer, buyer_signature)
        except ContractRejected as exc:
            raise Refusal("bad_agreement", str(exc)) from exc
        now_ms = clock.now_ms()
        expected = terms_for(cfp, offer, agreement.agreed_at_ms)
        if agreement.buyer != buyer or agreement.seller != identity.address:
            raise Refusal("terms_mismatch", "the agreement names other parties")
        if agreement.dialogue_id != cfp.dialogue or agreement.terms != expected:
            raise Refusal("terms_mismatch", "the agreement does not state the latest offer")
        if abs(agreement.agreed_at_ms - now_ms) > CLOCK_TOLERANCE_MS:
            raise Refusal("terms_mismatch", "agreed-at is too far from this clock")
        signed = SignedAgreement(agreement=agreement, buyer_signature=buyer_signature,
                                 seller_signature=agreement.sign(identity))
        return signed.to_wire()
    return countersign
