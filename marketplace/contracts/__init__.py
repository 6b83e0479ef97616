"""Contracts: what two parties sign, and the books they keep of it.

`agreement`, `sla` and `receipt` (with `signing` for their canonical bytes) are the signed
objects; `ledger` settles them over the hash chain of `chain`; `reputation` scores sellers from
receipts; `errors` names every refusal. Imports nothing else from the marketplace.
"""

from .agreement import MINOR_UNITS, Agreement, SignedAgreement, Terms, to_minor_units
from .chain import LedgerReport
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
    ReceiptMismatch,
    UnknownAgreement,
)
from .ledger import (
    AccessEvent,
    Balance,
    Entry,
    Ledger,
    LedgerConfig,
    Settlement,
    open_ledger,
)
from .receipt import Receipt, SignedReceipt, make_receipt
from .reputation import ReputationBook, Score
from .sla import Delivery, SlaOutcome, Verdict, check_sla

__all__ = [
    "MINOR_UNITS",
    "AccessEvent",
    "Agreement",
    "AlreadySettled",
    "BadContractSignature",
    "Balance",
    "ContractRejected",
    "Delivery",
    "Entry",
    "InsufficientFunds",
    "Ledger",
    "LedgerConfig",
    "LedgerCorrupt",
    "LedgerError",
    "LedgerFull",
    "LedgerReport",
    "LedgerTampered",
    "MalformedContract",
    "Receipt",
    "ReceiptMismatch",
    "ReputationBook",
    "Score",
    "Settlement",
    "SignedAgreement",
    "SignedReceipt",
    "SlaOutcome",
    "Terms",
    "UnknownAgreement",
    "Verdict",
    "check_sla",
    "make_receipt",
    "open_ledger",
    "to_minor_units",
]
