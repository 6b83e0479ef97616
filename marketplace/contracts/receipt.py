"""The buyer's signed receipt: the SLA verdict, the measurement behind it, the amounts.

A receipt names its agreement by id and repeats both parties, so a third party holding the
signed agreement and the receipt checks everything with the two public keys alone:
`SignedReceipt.verify_against` checks the agreement's two signatures, the buyer's signature
on the receipt (tag ``aaex/receipt/1``), that the ids and parties match, and that the verdict
and the amounts are exactly what `check_sla` gives for the measurement the receipt carries.
A buyer can still lie about what it measured (reputation's median deals with that), but it
cannot sign arithmetic that does not follow from its own numbers.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature
from aaex_agents.money import NonNegativeCredits

from .agreement import Agreement, SignedAgreement
from .errors import BadContractSignature, ReceiptMismatch
from .signing import Address, content_id, decode_wire, encode_wire, signing_bytes
from .sla import Delivery, TokenUsage, Verdict, check_sla

RECEIPT_TAG = "aaex/receipt/1"
_HEX64 = r"^[0-9a-f]{64}$"


class Receipt(BaseModel):
    """The buyer's statement of how an agreement ended. Build it with `make_receipt`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str = Field(pattern=_HEX64)
    """Id of the agreement settled (`Agreement.id`)."""
    buyer: Address
    """The signer of this receipt."""
    seller: Address
    verdict: Verdict
    result_hash: str | None = Field(default=None, pattern=_HEX64)
    """sha256 of the result received; None when nothing arrived."""
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    latency_ms: int | None = None
    """finished - started: the measurement the verdict rests on."""
    release: NonNegativeCredits
    """Escrow paid to the seller."""
    refund: NonNegativeCredits
    """Escrow returned to the buyer."""
    penalty: NonNegativeCredits
    """What the seller owes the buyer (a debt on both books)."""
    issued_at_ms: int = Field(gt=0)
    usage: TokenUsage | None = Field(default=None, exclude_if=lambda value: value is None)
    """For a per-token sale: the token counts and timings the amounts follow from. Left out
    of the signed bytes when unset, so a fixed-price receipt signs what it always did."""

    @model_validator(mode="after")
    def _shape(self) -> Self:
        facts = (self.result_hash, self.started_at_ms, self.finished_at_ms, self.latency_ms)
        if self.verdict == "not_delivered" and any(f is not None for f in facts):
            raise ValueError("a not_delivered receipt carries no result hash or timings")
        if self.verdict != "not_delivered" and any(f is None for f in facts):
            raise ValueError(f"a {self.verdict} receipt carries the result hash and timings")
        if self.verdict == "not_delivered" and self.usage is not None:
            raise ValueError("a not_delivered receipt carries no token usage")
        return self

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes: what makes two submissions 'the same receipt'."""
        return content_id(RECEIPT_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what the buyer signs."""
        return signing_bytes(RECEIPT_TAG, self)

    def delivery(self) -> Delivery | None:
        """The delivery facts this receipt states (None for not_delivered)."""
        if self.result_hash is None or self.started_at_ms is None or self.finished_at_ms is None:
            return None
        return Delivery(result_hash=self.result_hash, started_at_ms=self.started_at_ms,
                        finished_at_ms=self.finished_at_ms, usage=self.usage)


def make_receipt(agreement: Agreement, delivery: Delivery | None, *,
                 issued_at_ms: int) -> Receipt:
    """The receipt `check_sla` implies for `delivery` (None: nothing arrived).

    Raises:
        UsageError: the delivery's times are impossible for this agreement.
    """
    outcome = check_sla(agreement, delivery)
    return Receipt(
        agreement_id=agreement.id, buyer=agreement.buyer, seller=agreement.seller,
        verdict=outcome.verdict, latency_ms=outcome.latency_ms,
        result_hash=delivery.result_hash if delivery else None,
        started_at_ms=delivery.started_at_ms if delivery else None,
        finished_at_ms=delivery.finished_at_ms if delivery else None,
        release=outcome.release, refund=outcome.refund, penalty=outcome.penalty,
        issued_at_ms=issued_at_ms, usage=delivery.usage if delivery else None)


class SignedReceipt(BaseModel):
    """A receipt with the buyer's signature; embeddable in messages as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")

    receipt: Receipt
    buyer_signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def create(cls, receipt: Receipt, buyer: Identity) -> SignedReceipt:
        """Sign `receipt` as its buyer.

        Raises:
            UsageError: `buyer` is not the receipt's buyer.
        """
        if buyer.address != receipt.buyer:
            raise UsageError(f"receipt for agreement {receipt.agreement_id[:12]} must be signed "
                             f"by its buyer {receipt.buyer}, not {buyer.address}")
        return cls(receipt=receipt, buyer_signature=buyer.sign(receipt.signing_bytes()))

    @property
    def id(self) -> str:
        """The receipt's content id."""
        return self.receipt.id

    def verify(self) -> None:
        """Check the buyer's signature only (the agreement is not consulted).

        Raises:
            BadContractSignature: the signature does not verify against the buyer's address.
        """
        if not verify_signature(self.receipt.buyer, self.receipt.signing_bytes(),
                                self.buyer_signature):
            raise BadContractSignature(
                f"receipt for agreement {self.receipt.agreement_id[:12]}: the buyer's signature "
                f"does not verify against {self.receipt.buyer}")

    def verify_against(self, signed: SignedAgreement) -> None:
        """Check everything a third party can: both contracts' signatures and the arithmetic.

        Raises:
            BadContractSignature: a signature on the agreement or the receipt does not verify.
            ReceiptMismatch: another agreement or other parties, or a verdict or amounts that
                do not follow from the terms and the receipt's own measurement.
        """
        signed.verify()
        self.verify()
        receipt, agreement = self.receipt, signed.agreement
        if receipt.agreement_id != agreement.id:
            raise ReceiptMismatch(f"receipt names agreement {receipt.agreement_id[:12]}, "
                                  f"not {agreement.id[:12]}")
        if (receipt.buyer, receipt.seller) != (agreement.buyer, agreement.seller):
            raise ReceiptMismatch(f"receipt for agreement {agreement.id[:12]} names other parties")
        try:
            outcome = check_sla(agreement, receipt.delivery())
        except UsageError as exc:
            raise ReceiptMismatch(f"receipt for agreement {agreement.id[:12]}: {exc}") from None
        stated = (receipt.verdict, receipt.latency_ms, receipt.release, receipt.refund,
                  receipt.penalty)
        implied = (outcome.verdict, outcome.latency_ms, outcome.release, outcome.refund,
                   outcome.penalty)
        if stated != implied:
            raise ReceiptMismatch(
                f"receipt for agreement {agreement.id[:12]} states (verdict, latency, release, "
                f"refund, penalty) = {stated}, but its terms and measurement give {implied}")

    def to_wire(self) -> bytes:
        """``[tag, body, buyer signature]`` in msgpack."""
        return encode_wire(RECEIPT_TAG, self.receipt, [self.buyer_signature])

    @classmethod
    def from_wire(cls, data: bytes) -> SignedReceipt:
        """Decode a receipt and check the buyer's signature (not yet against an agreement).

        Raises:
            MalformedContract: not a canonical receipt.
            BadContractSignature: the buyer's signature does not verify.
        """
        receipt, (signature,) = decode_wire(data, RECEIPT_TAG, Receipt, signatures=1)
        signed = cls(receipt=receipt, buyer_signature=signature)
        signed.verify()
        return signed

    def __repr__(self) -> str:
        return (f"<SignedReceipt {self.id[:12]} {self.receipt.verdict} "
                f"agreement={self.receipt.agreement_id[:12]}>")
