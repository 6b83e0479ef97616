"""Disputes: when the two parties' signed facts about one agreement contradict each other.

Each fact is signed by the party that controls it: the seller signs its delivery (the
result's hash, when it started and finished, the tokens its engine counted); the buyer signs
the receipt (the verdict and the amounts that follow from those facts) and, when it contests
a delivery, what it observed (when it sent the task and when the result arrived). Each side
checks the other's before money moves:

- the buyer judges a delivery by the seller's signed timings when they agree with its own
  observation within the agreement's tolerance, or when the difference does not change the
  verdict (`timing_conflicts`); otherwise it contests the delivery;
- the seller books a receipt only when it states the seller's own signed facts
  (`receipt_conflicts`): the same result hash, timings and token counts, or, for a
  ``not_delivered`` receipt, amounts its delivery would also have given.

A contradiction becomes a `Dispute` (tag ``aaex/dispute/1``), signed by the party that
raises it, naming the conflicting fields; both books record it, the money stays held and no
reputation moves. The conflicts are not an opinion: anyone holding the agreement, the
dispute and the signed evidence recomputes them (`DisputeEvidence.verify`). A dispute ends by
a `Resolution` (tag ``aaex/resolution/1``) that both parties sign, or that the arbiter the
agreement names signs alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature
from aaex_agents.money import NonNegativeCredits

from .agreement import Agreement, SignedAgreement
from .delivery import delivery_signed_by
from .errors import BadContractSignature, ReceiptMismatch
from .receipt import Receipt, SignedReceipt
from .signing import Address, content_id, decode_wire, encode_wire, signing_bytes
from .sla import Delivery, TokenUsage, check_sla

DISPUTE_TAG = "aaex/dispute/1"
RESOLUTION_TAG = "aaex/resolution/1"
DEFAULT_TOLERANCE_MS = 1_000
"""How far the buyer's observation may differ from the seller's signed timings (network,
queueing and clock skew) when the agreement names no tolerance of its own."""
_HEX64 = r"^[0-9a-f]{64}$"
_USAGE_FIELDS = ("input_tokens", "output_tokens", "ttft_ms", "generation_ms")

Party = Literal["buyer", "seller"]


class Conflict(BaseModel):
    """One field on which the seller's signed fact and the buyer's differ."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str = Field(max_length=64)
    seller: str = Field(max_length=200)
    """What the seller signed."""
    buyer: str = Field(max_length=200)
    """What the buyer signed or observed."""


def tolerance_ms(agreement: Agreement) -> int:
    """The agreed tolerance between the two parties' timings (`DEFAULT_TOLERANCE_MS` if unset)."""
    own = agreement.terms.tolerance_ms
    return DEFAULT_TOLERANCE_MS if own is None else own


def seller_delivery(agreement: Agreement, delivery: Mapping[str, Any],
                    usage: TokenUsage | None) -> Delivery:
    """The delivery facts a receipt must state: the seller's signed hash and timings.

    The start is clamped to the agreed-at (the SLA clock cannot start earlier) and the
    finish to the start, as `check_sla` requires.
    """
    started = max(agreement.agreed_at_ms, int(delivery["started_at_ms"]))
    return Delivery(result_hash=delivery["result_hash"], started_at_ms=started,
                    finished_at_ms=max(started, int(delivery["finished_at_ms"])), usage=usage)


def timing_conflicts(agreement: Agreement, delivery: Mapping[str, Any], usage: TokenUsage | None,
                     *, dispatched_ms: int, received_ms: int) -> list[Conflict]:
    """Where the seller's signed timings contradict the buyer's observation (empty: none).

    A difference matters only when it changes the verdict and exceeds the tolerance: a
    seller's clock a little ahead, or a result a little slow on the wire, is not a dispute.
    """
    signed = seller_delivery(agreement, delivery, usage)
    seen_start = max(agreement.agreed_at_ms, dispatched_ms)
    observed = Delivery(result_hash=signed.result_hash, started_at_ms=seen_start,
                        finished_at_ms=max(seen_start, received_ms), usage=usage)
    by_seller, by_buyer = check_sla(agreement, signed), check_sla(agreement, observed)
    if by_seller.verdict == by_buyer.verdict:
        return []
    slack = tolerance_ms(agreement)
    conflicts = []
    if signed.started_at_ms + slack < observed.started_at_ms:
        conflicts.append(Conflict(field="started_at_ms", seller=str(signed.started_at_ms),
                                  buyer=f"task sent at {observed.started_at_ms}"))
    if signed.finished_at_ms + slack < observed.finished_at_ms:
        conflicts.append(Conflict(field="finished_at_ms", seller=str(signed.finished_at_ms),
                                  buyer=f"result received at {observed.finished_at_ms}"))
    if by_buyer.latency_ms is not None and by_seller.latency_ms is not None \
            and by_buyer.latency_ms - by_seller.latency_ms > slack:
        conflicts.append(Conflict(field="latency_ms", seller=str(by_seller.latency_ms),
                                  buyer=str(by_buyer.latency_ms)))
    if conflicts:
        conflicts.append(Conflict(field="verdict", seller=by_seller.verdict,
                                  buyer=by_buyer.verdict))
    return conflicts


def _usage_conflicts(delivery: Mapping[str, Any], receipt: Receipt) -> list[Conflict]:
    result = delivery.get("result")
    counted = result.get("usage") if isinstance(result, Mapping) else None
    if not isinstance(counted, Mapping):
        return []
    stated = receipt.usage
    conflicts = []
    for name in _USAGE_FIELDS:
        ours = counted.get(name)
        theirs = getattr(stated, name) if stated is not None else None
        if ours != theirs:
            conflicts.append(Conflict(field=f"usage.{name}", seller=str(ours), buyer=str(theirs)))
    text = result.get("text") if isinstance(result, Mapping) else None
    if isinstance(text, str) and stated is not None \
            and stated.output_bytes != len(text.encode()):
        conflicts.append(Conflict(field="usage.output_bytes", seller=str(len(text.encode())),
                                  buyer=str(stated.output_bytes)))
    return conflicts


def receipt_conflicts(agreement: Agreement, delivery: Mapping[str, Any] | None,
                      receipt: Receipt) -> list[Conflict]:
    """Where a receipt contradicts the delivery the seller signed (empty: it may be booked).

    `delivery` is the seller's own signed delivery (None: it delivered nothing, and no
    receipt can contradict that). A receipt states the seller's hash, timings and token
    counts; a ``not_delivered`` receipt for work the seller did deliver stands only when the
    delivery would have given the same amounts (it arrived too late to be paid anyway).
    """
    if delivery is None:
        return []
    facts = seller_delivery(agreement, delivery, receipt.usage)
    if receipt.verdict == "not_delivered":
        outcome = check_sla(agreement, seller_delivery(agreement, delivery,
                                                       _usage_of(delivery, agreement)))
        if (outcome.release, outcome.refund, outcome.penalty) == (
                receipt.release, receipt.refund, receipt.penalty):
            return []
        return [Conflict(field="verdict", seller=f"delivered at {facts.finished_at_ms}: "
                         f"{outcome.verdict}", buyer="not_delivered")]
    conflicts = [Conflict(field=name, seller=str(ours), buyer=str(theirs))
                 for name, ours, theirs in (
                     ("result_hash", facts.result_hash, receipt.result_hash),
                     ("started_at_ms", facts.started_at_ms, receipt.started_at_ms),
                     ("finished_at_ms", facts.finished_at_ms, receipt.finished_at_ms))
                 if ours != theirs]
    if agreement.terms.tokens is not None:
        conflicts.extend(_usage_conflicts(delivery, receipt))
    if conflicts:
        outcome = check_sla(agreement, facts)
        if outcome.verdict != receipt.verdict:
            conflicts.append(Conflict(field="verdict", seller=outcome.verdict,
                                      buyer=receipt.verdict))
    return conflicts


class Dispute(BaseModel):
    """A party's signed statement that the other's facts about an agreement contradict its own.

    The seller raising it carries the receipt it refuses (`receipt`, its wire form in hex);
    the buyer raising it carries what it observed (`dispatched_ms`, `received_ms`). The
    seller's signed delivery travels beside it (`DisputeEvidence`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str = Field(pattern=_HEX64)
    raised_by: Address
    party: Party
    conflicts: tuple[Conflict, ...] = Field(min_length=1, max_length=16)
    receipt: str | None = Field(default=None, max_length=16_384, pattern=r"^[0-9a-f]*$")
    dispatched_ms: int | None = Field(default=None, gt=0)
    received_ms: int | None = Field(default=None, gt=0)
    at_ms: int = Field(gt=0)

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.party == "seller" and self.receipt is None:
            raise ValueError("a seller's dispute carries the receipt it refuses")
        if self.party == "buyer" and (self.dispatched_ms is None or self.received_ms is None):
            raise ValueError("a buyer's dispute carries when it sent the task and got the result")
        return self

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes."""
        return content_id(DISPUTE_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what the raising party signs."""
        return signing_bytes(DISPUTE_TAG, self)

    def signed_receipt(self) -> SignedReceipt | None:
        """The receipt a seller's dispute refuses (its buyer's signature checked)."""
        return None if self.receipt is None else SignedReceipt.from_wire(
            bytes.fromhex(self.receipt))


class SignedDispute(BaseModel):
    """A dispute with the signature of the party that raised it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dispute: Dispute
    signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def create(cls, dispute: Dispute, party: Identity) -> SignedDispute:
        """Sign `dispute` as the party raising it.

        Raises:
            UsageError: `party` is not the dispute's `raised_by`.
        """
        if party.address != dispute.raised_by:
            raise UsageError(f"a dispute raised by {dispute.raised_by} cannot be signed by "
                             f"{party.address}")
        return cls(dispute=dispute, signature=party.sign(dispute.signing_bytes()))

    @property
    def id(self) -> str:
        """The dispute's content id."""
        return self.dispute.id

    def verify_against(self, signed: SignedAgreement) -> None:
        """Check both contracts' signatures, and that a party of this agreement raised it.

        Raises:
            BadContractSignature: a signature does not verify.
            ReceiptMismatch: another agreement, or a raiser who is not that party.
        """
        signed.verify()
        dispute, agreement = self.dispute, signed.agreement
        if dispute.agreement_id != signed.id:
            raise ReceiptMismatch(f"dispute names agreement {dispute.agreement_id[:12]}, "
                                  f"not {signed.id[:12]}")
        party = agreement.buyer if dispute.party == "buyer" else agreement.seller
        if dispute.raised_by != party:
            raise ReceiptMismatch(f"dispute of agreement {signed.id[:12]} is raised by "
                                  f"{dispute.raised_by}, who is not its {dispute.party}")
        if not verify_signature(dispute.raised_by, dispute.signing_bytes(), self.signature):
            raise BadContractSignature(f"dispute of agreement {signed.id[:12]}: the "
                                       f"{dispute.party}'s signature does not verify")

    def to_wire(self) -> bytes:
        """``[tag, body, signature]`` in msgpack."""
        return encode_wire(DISPUTE_TAG, self.dispute, [self.signature])

    @classmethod
    def from_wire(cls, data: bytes) -> SignedDispute:
        """Decode a dispute (its signature is checked by `verify_against`).

        Raises:
            MalformedContract: not a canonical dispute.
        """
        dispute, (signature,) = decode_wire(data, DISPUTE_TAG, Dispute, signatures=1)
        return cls(dispute=dispute, signature=signature)


def stated_conflicts(signed: SignedAgreement, dispute: Dispute,
                     delivery: Mapping[str, Any] | None) -> list[Conflict]:
    """The conflicts the evidence gives; a genuine dispute states exactly these.

    Raises:
        ReceiptMismatch: the seller's delivery or the refused receipt does not verify.
    """
    agreement = signed.agreement
    if delivery is not None and (delivery.get("agreement_id") != signed.id
                                 or not delivery_signed_by(delivery, agreement.seller)):
        raise ReceiptMismatch(f"the delivery of agreement {signed.id[:12]} in evidence is not "
                              "signed by its seller")
    if dispute.party == "seller":
        receipt = dispute.signed_receipt()
        if receipt is None:
            raise ReceiptMismatch("a seller's dispute needs the receipt it refuses")
        receipt.verify_against(signed)
        return receipt_conflicts(agreement, delivery, receipt.receipt)
    if delivery is None:
        raise ReceiptMismatch("a buyer's dispute needs the seller's signed delivery it contests")
    if dispute.dispatched_ms is None or dispute.received_ms is None:
        raise ReceiptMismatch("a buyer's dispute needs what it observed")
    usage = _usage_of(delivery, agreement)
    return timing_conflicts(agreement, delivery, usage, dispatched_ms=dispute.dispatched_ms,
                            received_ms=dispute.received_ms)


def _usage_of(delivery: Mapping[str, Any], agreement: Agreement) -> TokenUsage | None:
    """The seller's token counts in its delivery (byte counts as its text and no prompt)."""
    if agreement.terms.tokens is None:
        return None
    result = delivery.get("result")
    counted = result.get("usage") if isinstance(result, Mapping) else None
    if not isinstance(counted, Mapping) or not isinstance(result, Mapping):
        return None
    text = result.get("text")
    try:
        return TokenUsage(**{name: int(counted[name]) for name in _USAGE_FIELDS},
                          input_bytes=1 << 30,
                          output_bytes=len(text.encode()) if isinstance(text, str) else 0)
    except (KeyError, TypeError, ValueError):
        return None


def check_dispute(signed: SignedAgreement, dispute: SignedDispute,
                  delivery: Mapping[str, Any] | None) -> None:
    """Accept `dispute` only if it is signed by a party and its conflicts follow from evidence.

    Raises:
        BadContractSignature, ReceiptMismatch: forged, or conflicts the evidence does not give.
    """
    dispute.verify_against(signed)
    found = stated_conflicts(signed, dispute.dispute, delivery)
    if not found or tuple(found) != dispute.dispute.conflicts:
        raise ReceiptMismatch(f"dispute of agreement {signed.id[:12]} states conflicts the "
                              "signed evidence does not give")


class Resolution(BaseModel):
    """How a disputed agreement ends: the split of the held price and the penalty owed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str = Field(pattern=_HEX64)
    to_seller: NonNegativeCredits
    """Of the held price, what the seller is paid."""
    to_buyer: NonNegativeCredits
    """Of the held price, what goes back to the buyer."""
    penalty: NonNegativeCredits
    """What the seller owes the buyer besides (at most the agreed penalty)."""
    note: str = Field(default="", max_length=200)
    at_ms: int = Field(gt=0)

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes: both parties (or the arbiter) sign the same."""
        return content_id(RESOLUTION_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what each signer signs."""
        return signing_bytes(RESOLUTION_TAG, self)


class SignedResolution(BaseModel):
    """A resolution with the signatures gathered so far (address -> hex signature)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution: Resolution
    signatures: dict[Address, str] = Field(max_length=3)

    def signed_by(self, identity: Identity) -> SignedResolution:
        """A copy with `identity`'s signature added."""
        signature = identity.sign(self.resolution.signing_bytes()).hex()
        return self.model_copy(update={"signatures": {**self.signatures,
                                                      identity.address: signature}})

    def valid_signers(self) -> set[str]:
        """The addresses whose signatures verify."""
        found = set()
        for address, signature in self.signatures.items():
            try:
                if verify_signature(address, self.resolution.signing_bytes(),
                                    bytes.fromhex(signature)):
                    found.add(address)
            except (UsageError, ValueError):
                continue
        return found

    def verify_against(self, signed: SignedAgreement, *, complete: bool = True) -> None:
        """Check the amounts against the agreement and the signatures.

        `complete`: both parties, or the agreement's arbiter, must have signed; otherwise
        every signature present must verify and belong to a party or the arbiter.

        Raises:
            ReceiptMismatch: amounts that do not split the price, or signatures missing.
            BadContractSignature: a signature present does not verify.
        """
        signed.verify()
        resolution, agreement = self.resolution, signed.agreement
        terms = agreement.terms
        if resolution.agreement_id != signed.id:
            raise ReceiptMismatch(f"resolution names agreement {resolution.agreement_id[:12]}, "
                                  f"not {signed.id[:12]}")
        if resolution.to_seller + resolution.to_buyer != terms.price \
                or resolution.penalty > terms.penalty:
            raise ReceiptMismatch(f"resolution of agreement {signed.id[:12]} must split the "
                                  f"price {terms.price} and owe at most the penalty "
                                  f"{terms.penalty}")
        valid = self.valid_signers()
        if valid != set(self.signatures):
            raise BadContractSignature(f"resolution of agreement {signed.id[:12]}: a signature "
                                       "does not verify")
        allowed = {agreement.buyer, agreement.seller} | (
            {terms.arbiter} if terms.arbiter is not None else set())
        if not valid <= allowed:
            raise ReceiptMismatch(f"resolution of agreement {signed.id[:12]} is signed by a key "
                                  "that is neither a party nor its arbiter")
        done = {agreement.buyer, agreement.seller} <= valid or (
            terms.arbiter is not None and terms.arbiter in valid)
        if complete and not done:
            raise ReceiptMismatch(f"resolution of agreement {signed.id[:12]} needs both parties' "
                                  "signatures or its arbiter's")
