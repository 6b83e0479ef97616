"""The ledger's audit trail: who used which data, when, for what purpose.

A mixin of `marketplace.contracts.ledger.Ledger`: each event is an ``access`` entry on the
same hash chain as the money, so an edited or dropped event fails `verify` like a payment.
"""

from __future__ import annotations

import json

from aaex_agents.errors import UsageError

from . import ledger_store as store
from .ledger_base import LedgerBase
from .ledger_store import AccessEvent, Entry


class AuditBooks(LedgerBase):
    """Audit events on a ledger (mixed into `Ledger`)."""

    async def record_access(self, actor: str, data: str, purpose: str, *,
                            agreement_id: str | None = None) -> Entry:
        """Append an audit event: `actor` used `data` for `purpose`, now.

        Raises:
            UsageError: an empty actor, data or purpose.
            LedgerFull, LedgerError: nothing was recorded.
        """
        for name, value in (("actor", actor), ("data", data), ("purpose", purpose)):
            if not isinstance(value, str) or not value:
                raise UsageError(f"record_access: {name} must be a non-empty str, got {value!r}")
        body = {"actor": actor, "data": data, "purpose": purpose,
                "agreement_id": agreement_id, "at_ms": self._now_ms()}
        return await self._write(lambda c: store.append(c, "access", body,
                                                   agreement_id=agreement_id))

    async def access_events(self, *, actor: str | None = None,
                            data: str | None = None) -> list[AccessEvent]:
        """Audit events in order, optionally only one actor's or one data item's."""
        rows = await self._run(lambda c: c.execute(
            "SELECT seq, body FROM entries WHERE kind = 'access' ORDER BY seq").fetchall())
        events = []
        for seq, raw in rows:
            body = json.loads(raw)
            if (actor is None or body["actor"] == actor) and (data is None or
                                                               body["data"] == data):
                events.append(AccessEvent(seq, body["actor"], body["data"], body["purpose"],
                                          body["at_ms"], body["agreement_id"]))
        return events
