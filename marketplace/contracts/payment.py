"""Payments made outside the market (a bank transfer), signed by both partners.

What one partner owes another (marketplace.contracts.books) is settled outside the market.
Once money moved, each side's operator records it: a `Payment` (tag ``aaex/payment/1``)
names the payer, the payee, the amount, the operators' reference (the transfer's id) and a
nonce. One signature is an offer; it counts on the books only once **both** parties signed
the same bytes, so neither side can write down a payment the other never agreed was made.
Recorded on both ledgers, it is a line of its own in the books: the payee owes the payer
back what it was paid, which closes the debt that moved it.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity, verify_signature
from aaex_agents.money import NonNegativeCredits

from .errors import BadContractSignature, ReceiptMismatch
from .signing import Address, content_id, signing_bytes

PAYMENT_TAG = "aaex/payment/1"


class Payment(BaseModel):
    """A payment `payer` made to `payee` outside the market."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payer: Address
    """Who paid (the debtor)."""
    payee: Address
    """Who was paid (the creditor)."""
    amount: NonNegativeCredits
    """What was paid, in micro-credits (more than zero)."""
    currency: str = "credit"
    reference: str = Field(min_length=1, max_length=200)
    """The operators' reference of the transfer (a bank reference, an invoice number)."""
    at_ms: int = Field(gt=0)
    """When the first party signed it."""
    nonce: str = Field(default_factory=lambda: os.urandom(16).hex(), pattern=r"^[0-9a-f]{32}$")
    """Random: two payments of the same amount and reference stay two payments."""

    @model_validator(mode="after")
    def _shape(self) -> Payment:
        if self.payer == self.payee:
            raise ValueError("a payment needs two different parties")
        if self.amount.micro <= 0:
            raise ValueError("a payment moves more than zero")
        return self

    @property
    def id(self) -> str:
        """Hex sha256 of the signed bytes: both parties sign the same."""
        return content_id(PAYMENT_TAG, self)

    def signing_bytes(self) -> bytes:
        """Exactly what each party signs."""
        return signing_bytes(PAYMENT_TAG, self)

    def partner_of(self, address: str) -> str:
        """The other party of `address`."""
        return self.payee if address == self.payer else self.payer


class SignedPayment(BaseModel):
    """A payment with the signatures gathered so far (address -> hex signature)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payment: Payment
    signatures: dict[Address, str] = Field(max_length=2)

    @property
    def id(self) -> str:
        """The payment's content id."""
        return self.payment.id

    def signed_by(self, party: Identity) -> SignedPayment:
        """A copy with `party`'s signature added.

        Raises:
            UsageError: `party` is neither the payer nor the payee.
        """
        if party.address not in (self.payment.payer, self.payment.payee):
            raise UsageError(f"{party.address} is not a party of payment {self.id[:12]}")
        signature = party.sign(self.payment.signing_bytes()).hex()
        return self.model_copy(update={"signatures": {**self.signatures,
                                                      party.address: signature}})

    def verify(self, *, complete: bool = True) -> None:
        """Check every signature present belongs to a party and verifies.

        `complete`: the payer and the payee must both have signed.

        Raises:
            BadContractSignature: a signature does not verify, or a stranger signed.
            ReceiptMismatch: `complete` and a party's signature is missing.
        """
        parties = {self.payment.payer, self.payment.payee}
        for address, signature in self.signatures.items():
            try:
                valid = address in parties and verify_signature(
                    address, self.payment.signing_bytes(), bytes.fromhex(signature))
            except (UsageError, ValueError):
                valid = False
            if not valid:
                raise BadContractSignature(f"payment {self.id[:12]}: the signature of "
                                           f"{address} does not verify")
        if complete and set(self.signatures) != parties:
            raise ReceiptMismatch(f"payment {self.id[:12]} needs both the payer's and the "
                                  "payee's signatures")
