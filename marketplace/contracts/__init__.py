"""Contracts: what two parties sign, and the books they keep of it.

`agreement`, `sla` and `receipt` (with `signing` for their canonical bytes) are the signed
objects; `ledger` settles them over the hash chain of `chain` (pinned by the signed heads
of `checkpoint`), and `books` reads what each party owes from them (every amount is an
`aaex_agents.money.Credits`); `expiry` closes what was never escrowed; `reputation` scores sellers
from receipts; `grant` (decided by the ODRL evaluator of `odrl`) and `provenance` are what
data owners and sellers sign about data; `audit_log` is the audit trail's entries and signed
heads over the Merkle tree of `merkle`; `errors` names every refusal.
Imports nothing else from the marketplace.
"""

from .agreement import Agreement, SignedAgreement, Terms, TokenTerms
from .audit_log import AuditEntry, AuditEvidence, SignedTreeHead
from .chain import LedgerReport
from .checkpoint import Checkpoint
from .errors import (
    AlreadySettled,
    BadContractSignature,
    ContractRejected,
    InsufficientFunds,
    LedgerCorrupt,
    LedgerError,
    LedgerFull,
    LedgerTampered,
    MalformedContract,
    ProofFailed,
    ReceiptMismatch,
    UnknownAgreement,
)
from .grant import Grant, Revocation, SignedGrant, SignedRevocation, check_use
from .ledger import (
    AccessEvent,
    Balance,
    Entry,
    Ledger,
    LedgerConfig,
    Settlement,
    open_ledger,
)
from .provenance import InputRef, ModelRef, Provenance, SignedProvenance
from .receipt import Receipt, SignedReceipt, make_receipt
from .reputation import ReputationBook, Score
from .sla import Delivery, SlaOutcome, TokenUsage, Verdict, check_sla, token_cost

__all__ = [
    "AccessEvent",
    "Agreement",
    "AlreadySettled",
    "AuditEntry",
    "AuditEvidence",
    "BadContractSignature",
    "Balance",
    "Checkpoint",
    "ContractRejected",
    "Delivery",
    "Entry",
    "Grant",
    "InputRef",
    "InsufficientFunds",
    "Ledger",
    "LedgerConfig",
    "LedgerCorrupt",
    "LedgerError",
    "LedgerFull",
    "LedgerReport",
    "LedgerTampered",
    "MalformedContract",
    "ModelRef",
    "Provenance",
    "ProofFailed",
    "Receipt",
    "ReceiptMismatch",
    "ReputationBook",
    "Revocation",
    "Score",
    "Settlement",
    "SignedAgreement",
    "SignedGrant",
    "SignedProvenance",
    "SignedReceipt",
    "SignedRevocation",
    "SignedTreeHead",
    "SlaOutcome",
    "Terms",
    "TokenTerms",
    "TokenUsage",
    "UnknownAgreement",
    "Verdict",
    "check_sla",
    "check_use",
    "make_receipt",
    "open_ledger",
    "token_cost",
]
