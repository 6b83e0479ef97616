"""The buyer's signed word that an agreement was never escrowed: it closes with no money moved.

A seller countersigns an agreement and books the sale before the buyer has seen the
countersignature. If that reply never reaches the buyer (the seller died as it sent it, the
network dropped it, the buyer gave up waiting), the buyer never escrows the price and never
sends the task, and the sale would stay open on the seller's books for ever. Whether the
price was escrowed is the buyer's fact, so the buyer signs it: asked by the seller
(`marketplace.trade.escrow`), a buyer whose books do not hold the agreement records an
`Expiry` (tag ``aaex/expiry/1``) in the same transaction that makes its books refuse to
escrow it later, and both books close the agreement as ``expired``: nothing paid, nothing
owed, no reputation moved. Anyone holding the signed agreement and the expiry checks it with
the two parties' public keys alone (`SignedExpiry.verify_against`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature

from .agreement import SignedAgreement
from .errors import BadContractSignature, ReceiptMismatch
from .signing import Address, content_id, decode_wire, encode_wire, signing_bytes

EXPIRY_TAG = "aaex/expiry/1"
_HEX64 = r"^[0-9a-f]{64}$"

ExpiryReason = Literal["not_escrowed"]
"""Why an agreement expired: the buyer never escrowed its price (so no task was sent)."""


class Expiry(BaseModel):
    """The buyer's statement that agreement `agreement_id` ends unfunded."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agreement_id: str = Field(pattern=_HEX64)
    buyer: Address
    """The signer."""
    seller: Address
    reason: ExpiryReason
    at_ms: int = Field(gt=0)
    """When the buyer closed it (Unix milliseconds)."""

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes."""
        return content_id(EXPIRY_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what the buyer signs."""
        return signing_bytes(EXPIRY_TAG, self)


class SignedExpiry(BaseModel):
    """An expiry with the buyer's signature."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expiry: Expiry
    buyer_signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def create(cls, signed: SignedAgreement, buyer: Identity, *, at_ms: int,
               reason: ExpiryReason = "not_escrowed") -> SignedExpiry:
        """Sign, as the buyer of `signed`, that it ends unfunded.

        Raises:
            UsageError: `buyer` is not the agreement's buyer.
        """
        agreement = signed.agreement
        if buyer.address != agreement.buyer:
            raise UsageError(f"the expiry of agreement {signed.id[:12]} must be signed by its "
                             f"buyer {agreement.buyer}, not {buyer.address}")
        expiry = Expiry(agreement_id=signed.id, buyer=agreement.buyer, seller=agreement.seller,
                        reason=reason, at_ms=at_ms)
        return cls(expiry=expiry, buyer_signature=buyer.sign(expiry.signing_bytes()))

    @property
    def id(self) -> str:
        """The expiry's content id."""
        return self.expiry.id

    def verify_against(self, signed: SignedAgreement) -> None:
        """Check both contracts' signatures and that the expiry names this agreement.

        Raises:
            BadContractSignature: a signature does not verify.
            ReceiptMismatch: the expiry names another agreement or other parties.
        """
        signed.verify()
        expiry, agreement = self.expiry, signed.agreement
        if not verify_signature(expiry.buyer, expiry.signing_bytes(), self.buyer_signature):
            raise BadContractSignature(f"expiry of agreement {expiry.agreement_id[:12]}: the "
                                       f"buyer's signature does not verify")
        if expiry.agreement_id != signed.id or (expiry.buyer, expiry.seller) != (
                agreement.buyer, agreement.seller):
            raise ReceiptMismatch(f"expiry names agreement {expiry.agreement_id[:12]} between "
                                  f"other parties, not {signed.id[:12]}")

    def to_wire(self) -> bytes:
        """``[tag, body, buyer signature]`` in msgpack."""
        return encode_wire(EXPIRY_TAG, self.expiry, [self.buyer_signature])

    @classmethod
    def from_wire(cls, data: bytes) -> SignedExpiry:
        """Decode an expiry (its signature is checked by `verify_against`).

        Raises:
            MalformedContract: not a canonical expiry.
        """
        expiry, (signature,) = decode_wire(data, EXPIRY_TAG, Expiry, signatures=1)
        return cls(expiry=expiry, buyer_signature=signature)
