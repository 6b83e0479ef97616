"""What the ledger's operation mixins (disputes, audit) need from `Ledger` itself."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from aaex_agents.identity import Identity

from .agreement import SignedAgreement

T = TypeVar("T")


class LedgerBase:
    """The worker-thread runners and the reads `Ledger` provides to its mixins."""

    def _now_ms(self) -> int:
        raise NotImplementedError

    def _signer(self) -> Identity | None:
        raise NotImplementedError

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def agreement(self, agreement_id: str) -> SignedAgreement:
        """The recorded agreement (see Ledger.agreement)."""
        raise NotImplementedError

    async def delivery(self, agreement_id: str) -> dict[str, Any] | None:
        """The kept delivery (see Ledger.delivery)."""
        raise NotImplementedError
