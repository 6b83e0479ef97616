"""Pin the settlement part of marketplace's public surface (contracts, ledger, reputation)."""

from __future__ import annotations

import marketplace
from aaex_agents import AaexError

SETTLEMENT = {
    "Credits", "AccessEvent", "Agreement", "AlreadySettled", "BadContractSignature",
    "Balance", "ContractRejected", "Delivery", "Entry", "InsufficientFunds", "Ledger",
    "LedgerConfig", "LedgerCorrupt", "LedgerError", "LedgerFull", "LedgerReport",
    "LedgerTampered", "MalformedContract", "Receipt", "ReceiptMismatch", "ReputationBook",
    "Score", "Settlement", "SignedAgreement", "SignedReceipt", "SlaOutcome", "Terms",
    "UnknownAgreement", "Verdict", "check_sla", "make_receipt", "open_ledger",
}


def test_settlement_names_are_exported() -> None:
    assert SETTLEMENT <= set(marketplace.__all__)
    assert len(set(marketplace.__all__)) == len(marketplace.__all__)
    for name in marketplace.__all__:
        assert getattr(marketplace, name) is not None


def test_every_market_error_is_an_aaex_error() -> None:
    errors = [getattr(marketplace, n) for n in marketplace.__all__
              if isinstance(getattr(marketplace, n), type)
              and issubclass(getattr(marketplace, n), Exception)]
    assert len(errors) >= 11
    assert all(issubclass(e, AaexError) for e in errors)
    reasons = [e.reason for e in errors if issubclass(e, marketplace.ContractRejected)]
    assert len(reasons) == len(set(reasons))
