"""Why the market refused a contract or a ledger operation.

Part of the AAEX error tree (see aaex_agents.errors)::

    AaexError
    ├── ContractRejected            a signed agreement or receipt failed a check (`reason`)
    │   ├── MalformedContract       bytes or fields that are not a canonical agreement or receipt
    │   ├── BadContractSignature    a party's signature does not verify against its address
    │   ├── ReceiptMismatch         the receipt does not fit its agreement (id, parties, SLA sums)
    │   └── ProofFailed             a Merkle inclusion or consistency proof does not verify
    ├── UnknownAgreement            a receipt or lookup names an agreement that was never recorded
    └── LedgerError                 the ledger did not do what was asked; nothing was written
        ├── LedgerCorrupt           the file is not an AAEX ledger, or SQLite finds it damaged
        ├── LedgerTampered          verify() found an edited, reordered or deleted entry (`seq`)
        ├── LedgerFull              the disk (or the configured size limit) is full
        ├── InsufficientFunds       a hold needs more than the payer has available
        ├── AlreadySettled          another receipt already settled this agreement
        ├── AgreementExpired        the buyer closed this agreement unfunded; it escrows nothing
        └── EscrowHeld              the agreement is escrowed here, so it cannot expire

A closed ledger used again raises aaex_agents.UsageError, as a closed agent store does.
sqlite3 exceptions are translated in marketplace.contracts.ledger and never leave it.
"""

from __future__ import annotations

from typing import ClassVar

from aaex_agents.errors import AaexError
from aaex_agents.money import Credits


class ContractRejected(AaexError):
    """A signed agreement or receipt failed verification; nothing relies on it.

    `reason` is a short stable code (``"bad_signature"``...) a peer can be told.
    """

    reason: ClassVar[str] = "rejected"


class MalformedContract(ContractRejected):
    """Not the canonical wire form of the expected kind, or a field breaks an invariant."""

    reason = "malformed"


class BadContractSignature(ContractRejected):
    """A party's Ed25519 signature does not verify against the key in its address."""

    reason = "bad_signature"


class ProofFailed(ContractRejected):
    """A Merkle inclusion or consistency proof of an audit log does not verify."""

    reason = "bad_proof"


class ReceiptMismatch(ContractRejected):
    """The receipt does not fit its agreement.

    It names another agreement or other parties, or its verdict and amounts do not follow
    from the agreed terms and the measurement it carries.
    """

    reason = "mismatch"


class UnknownAgreement(AaexError):
    """A receipt or a lookup refers to an agreement that was never recorded here."""


class LedgerError(AaexError):
    """The ledger could not carry out the operation; the transaction was rolled back."""


class LedgerCorrupt(LedgerError):
    """The file is not an AAEX ledger, or SQLite reports it damaged; restore it from a copy."""


class LedgerTampered(LedgerError):
    """`Ledger.verify` found an entry that was edited, reordered or deleted.

    `seq` is the first sequence number where the chain breaks, `problem` what is wrong there.
    """

    def __init__(self, seq: int, problem: str) -> None:
        self.seq = seq
        self.problem = problem
        super().__init__(f"ledger entry {seq}: {problem}")


class LedgerFull(LedgerError):
    """The disk, or the ledger's configured size limit, is full; free space and retry."""


class InsufficientFunds(LedgerError):
    """An escrow hold or a withdrawal needs more than the payer has available; nothing moved.

    `needed` and `available` are `Credits`; the message says them in decimal credits.
    """

    def __init__(self, address: str, needed: Credits, available: Credits,
                 currency: str, *, advice: str = "fund it with `aaex account deposit`") -> None:
        self.address = address
        self.needed = needed
        self.available = available
        self.currency = currency
        unit = "credits" if currency == "credit" else currency
        super().__init__(f"{address} has {available} {unit} available, "
                         f"{needed} {unit} needed (held escrow does not "
                         f"count); {advice}")


class AlreadySettled(LedgerError):
    """A different receipt already settled this agreement; an agreement pays out once."""


class AgreementExpired(LedgerError):
    """The buyer's books closed this agreement as never escrowed; it can no longer be funded.

    Raised to a delegation that tries to escrow an agreement after its buyer signed the
    expiry a seller asked for (marketplace.contracts.expiry): nothing was held.
    """


class EscrowHeld(LedgerError):
    """These books escrowed the agreement: its receipt closes it, never an expiry."""


class Disputed(LedgerError):
    """The agreement is disputed on these books: only a resolution settles it now."""
