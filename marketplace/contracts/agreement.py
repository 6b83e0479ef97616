"""Agreed terms and the agreement both parties sign.

An `Agreement` is what negotiation ends with: who buys, who sells, the `Terms` (task, price,
SLA, penalty), when it was agreed and a nonce. The buyer and the seller each sign the same
bytes (``"aaex/agreement/1" || 0x00 || canonical JSON``, see marketplace.contracts.signing); a
`SignedAgreement` carries both signatures, and anyone holding only the two addresses can
check it, because an address *is* its Ed25519 public key.

Money is `Credits` (aaex_agents.money): an integer count of micro-credits, which the signed
bytes carry as that integer. A ledger must add up exactly, and floats do not. Times are
Unix milliseconds, integers for the same reason.
"""

from __future__ import annotations

import os
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature
from aaex_agents.money import ZERO, NonNegativeCredits

from .errors import BadContractSignature
from .signing import Address, content_id, decode_wire, encode_wire, signing_bytes

AGREEMENT_TAG = "aaex/agreement/1"

_HEX64 = r"^[0-9a-f]{64}$"
_ID_TEXT = r"^[A-Za-z0-9_.:-]{1,128}$"


class TokenTerms(BaseModel):
    """Per-token prices, the token cap and the generation SLA of a language-model sale.

    With these in its `Terms`, the agreed `Terms.price` is the most the buyer can owe (the
    cap it escrows); a met delivery pays the tokens the seller's engine counted at these
    prices, and the rest of the escrow goes back (see marketplace.contracts.sla). Prices are
    `Credits` per 1,000 tokens, like every amount in a contract.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_1k: NonNegativeCredits
    """Price of 1,000 prompt tokens."""
    output_per_1k: NonNegativeCredits
    """Price of 1,000 generated tokens."""
    max_output_tokens: int = Field(gt=0)
    """The most tokens the seller may generate (and bill) for this task."""
    max_ttft_ms: int = Field(gt=0)
    """Longest time to the first generated token, as the seller's engine measured it."""
    min_tokens_per_s: int = Field(default=0, ge=0)
    """Slowest decoding speed promised (tokens per second after the first); 0: none."""


def _unset(value: object) -> bool:
    return value is None


class GrantTerms(BaseModel):
    """The data grant a task is performed under, and the use of it agreed.

    Both parties sign it with the rest of the terms, so the seller checks the grant before
    it countersigns (nothing escrowed yet) and again when the task arrives, and neither side
    can later claim another use (see marketplace.contracts.grant).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    grant_id: str = Field(pattern=_HEX64)
    """The id of the owner-signed grant the task's data is used under."""
    action: str = Field(pattern=r"^[a-z][A-Za-z]{0,31}$")
    """What the seller does with the data (``read``, ``use``...)."""
    purpose: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", max_length=64)
    """What for (``inference``, ``forecast.demand``...)."""


class Terms(BaseModel):
    """What was agreed: the task, the price and the service level, with its penalty.

    `tokens`, `tolerance_ms`, `arbiter` and `grant` are optional and left out of the signed
    bytes when unset, so an agreement without them signs exactly the bytes it always did.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_hash: str = Field(pattern=_HEX64)
    """sha256 (hex) of the task as the buyer described it; names the work, not a copy of it."""
    capability: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    """The capability bought, e.g. ``forecast.demand``."""
    price: NonNegativeCredits
    """Paid to the seller when the SLA is met, in `currency`."""
    currency: str = Field(default="credit", pattern=r"^[a-z][a-z0-9_]{0,15}$")
    """Currency of `price` and `penalty`."""
    max_latency_ms: int = Field(gt=0)
    """Longest time from the task's start to the result's arrival that still meets the SLA."""
    deadline_ms: int = Field(gt=0)
    """Unix ms by which the result must have arrived, whatever the latency."""
    penalty: NonNegativeCredits = ZERO
    """Paid by the seller to the buyer on breach or non-delivery; the seller's bond, held
    from the seller at agreement so that it can always be paid."""
    tokens: TokenTerms | None = Field(default=None, exclude_if=_unset)
    """Per-token billing (a language-model sale); None: `price` is a fixed price."""
    tolerance_ms: int | None = Field(default=None, ge=0, le=60_000, exclude_if=_unset)
    """How far the buyer's observed timings may differ from the seller's signed ones before
    it contests a delivery (None: `dispute.DEFAULT_TOLERANCE_MS`)."""
    arbiter: Address | None = Field(default=None, exclude_if=_unset)
    """A key both parties accept to decide a dispute alone (None: only both parties together
    resolve one)."""
    grant: GrantTerms | None = Field(default=None, exclude_if=_unset)
    """The data grant the task uses and the use agreed (None: the task carries no one's
    data under a grant)."""


class Agreement(BaseModel):
    """The content both parties sign. Sign with `sign`; combine into `SignedAgreement`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dialogue_id: str = Field(pattern=_ID_TEXT)
    """The negotiation dialogue this agreement closes."""
    buyer: Address
    """Address of the buyer; it pays `terms.price` into escrow."""
    seller: Address
    """Address of the seller; it posts `terms.penalty` as a bond."""
    terms: Terms
    agreed_at_ms: int = Field(gt=0)
    """Unix ms when the agreement was made; the SLA clock cannot start earlier."""
    nonce: str = Field(default_factory=lambda: os.urandom(16).hex(), pattern=r"^[0-9a-f]{32}$")
    """128 random bits: two agreements on identical terms still get different ids."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.buyer == self.seller:
            raise ValueError("buyer and seller must be different agents")
        if self.terms.arbiter in (self.buyer, self.seller):
            raise ValueError("a party cannot be the agreement's arbiter")
        if self.terms.deadline_ms <= self.agreed_at_ms:
            raise ValueError(f"terms.deadline_ms ({self.terms.deadline_ms}) must be after "
                             f"agreed_at_ms ({self.agreed_at_ms})")
        return self

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes: the agreement's id for receipts and the ledger."""
        return content_id(AGREEMENT_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what the buyer and the seller sign."""
        return signing_bytes(AGREEMENT_TAG, self)

    def sign(self, identity: Identity) -> bytes:
        """Return `identity`'s signature of this agreement.

        Raises:
            UsageError: `identity` is neither the buyer nor the seller.
        """
        if identity.address not in (self.buyer, self.seller):
            raise UsageError(f"agreement {self.id[:12]} is between {self.buyer} and "
                             f"{self.seller}; {identity.address} cannot sign it")
        return identity.sign(self.signing_bytes())

    def check_signature(self, party: str, signature: bytes) -> None:
        """Raise BadContractSignature unless `party` (buyer or seller) signed this agreement."""
        if party not in (self.buyer, self.seller):
            raise BadContractSignature(f"{party} is not a party to agreement {self.id[:12]}")
        if not verify_signature(party, self.signing_bytes(), signature):
            role = "buyer" if party == self.buyer else "seller"
            raise BadContractSignature(
                f"the {role}'s signature on agreement {self.id[:12]} does not verify "
                f"against {party}")


class SignedAgreement(BaseModel):
    """An agreement with both parties' signatures; embeddable in messages as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64",
                              val_json_bytes="base64")

    agreement: Agreement
    buyer_signature: bytes = Field(min_length=64, max_length=64)
    seller_signature: bytes = Field(min_length=64, max_length=64)

    @classmethod
    def create(cls, agreement: Agreement, buyer: Identity, seller: Identity) -> SignedAgreement:
        """Sign `agreement` with both identities at once (one process holding both keys).

        Raises:
            UsageError: an identity is not the party it is passed as.
        """
        if buyer.address != agreement.buyer or seller.address != agreement.seller:
            raise UsageError("pass the buyer's identity as `buyer` and the seller's as `seller`")
        return cls(agreement=agreement, buyer_signature=agreement.sign(buyer),
                   seller_signature=agreement.sign(seller))

    @property
    def id(self) -> str:
        """The agreement's id (signatures are not part of it)."""
        return self.agreement.id

    def verify(self) -> None:
        """Check both signatures against the parties' addresses; no lookup is needed.

        Raises:
            BadContractSignature: either signature does not verify.
        """
        self.agreement.check_signature(self.agreement.buyer, self.buyer_signature)
        self.agreement.check_signature(self.agreement.seller, self.seller_signature)

    def to_wire(self) -> bytes:
        """``[tag, body, buyer signature, seller signature]`` in msgpack."""
        return encode_wire(AGREEMENT_TAG, self.agreement,
                           [self.buyer_signature, self.seller_signature])

    @classmethod
    def from_wire(cls, data: bytes) -> SignedAgreement:
        """Decode and fully verify a signed agreement, as any third party can.

        Raises:
            MalformedContract: not a canonical agreement.
            BadContractSignature: a signature does not verify.
        """
        agreement, (buyer_signature, seller_signature) = decode_wire(
            data, AGREEMENT_TAG, Agreement, signatures=2)
        signed = cls(agreement=agreement, buyer_signature=buyer_signature,
                     seller_signature=seller_signature)
        signed.verify()
        return signed

    def __repr__(self) -> str:
        t = self.agreement.terms
        return (f"<SignedAgreement {self.id[:12]} {t.capability} {t.price} {t.currency} "
                f"{self.agreement.buyer[:12]}..->{self.agreement.seller[:12]}..>")
