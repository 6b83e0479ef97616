"""Half-signed offers kept on the ledger's file, so a restart does not forget them.

A payment made outside the market or a dispute's resolution counts once both parties signed
it; until then one party's signed half waits for the other's operator. Such a half moves no
money, so it is not an entry of the hash chain: it sits in its own table of the same file
(`kept_offers`), written in the same transactions as everything else, and the desks that
hold it in memory (marketplace.trade.payments, marketplace.trade.disputes) load it back at
start. A mixin of `marketplace.contracts.ledger.Ledger`.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .ledger_base import LedgerBase


class OfferBooks(LedgerBase):
    """Keep, drop and read back half-signed offers (mixed into `Ledger`)."""

    async def keep_offer(self, kind: str, key: str, side: str, body: dict[str, Any]) -> None:
        """Keep `body` as the offer of `kind` under `key` from `side`, replacing an older one."""
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))

        def keep(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM kept_offers WHERE kind = ? AND key = ? AND side = ?",
                      (kind, key, side))
            c.execute("INSERT INTO kept_offers (kind, key, side, body) VALUES (?, ?, ?, ?)",
                      (kind, key, side, text))
        await self._write(keep)

    async def drop_offer(self, kind: str, key: str, side: str | None = None) -> None:
        """Forget the offer(s) of `kind` under `key` (from `side` only, when given)."""
        def drop(c: sqlite3.Connection) -> None:
            if side is None:
                c.execute("DELETE FROM kept_offers WHERE kind = ? AND key = ?", (kind, key))
            else:
                c.execute("DELETE FROM kept_offers WHERE kind = ? AND key = ? AND side = ?",
                          (kind, key, side))
        await self._write(drop)

    async def kept_offers(self, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(key, side, body) of every offer of `kind` kept, oldest first."""
        def read(c: sqlite3.Connection) -> list[tuple[str, str, dict[str, Any]]]:
            return [(key, side, json.loads(body)) for key, side, body in c.execute(
                "SELECT key, side, body FROM kept_offers WHERE kind = ? ORDER BY kept",
                (kind,))]
        return await self._run(read)
