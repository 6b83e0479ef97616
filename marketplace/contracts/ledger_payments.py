"""The ledger's payments: record one both partners signed, read them back as lines.

A mixin of `marketplace.contracts.ledger.Ledger` (which runs every call on the ledger's
worker thread); the contract is marketplace.contracts.payment, its effect on balances in
marketplace.contracts.chain (`effects`, replayed by `verify`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Literal

from aaex_agents.errors import UsageError
from aaex_agents.money import Credits

from . import ledger_store as store
from .books import Line, payment_line
from .ledger_base import LedgerBase
from .ledger_store import Entry
from .payment import SignedPayment

logger = logging.getLogger(__name__)

PaymentRole = Literal["payer", "payee"]


def payment_lines(c: sqlite3.Connection) -> list[Line]:
    """The line of every payment on these books, oldest first."""
    return [payment_line(SignedPayment.model_validate(json.loads(raw)["payment"]))
            for (raw,) in c.execute("SELECT body FROM entries WHERE kind = 'payment' "
                                    "ORDER BY seq")]


class PaymentBooks(LedgerBase):
    """Payments made outside the market, on a ledger (mixed into `Ledger`)."""

    async def record_payment(self, signed: SignedPayment, ours: str) -> tuple[Entry, bool]:
        """Record `signed`, a payment our agent `ours` is a party of, once; (entry, is new).

        Only a payment both partners signed counts. On the payee's books the amount becomes
        the payee's available money (it was paid: it may spend or withdraw it); on the
        payer's books it leaves what was held there in the payee's name, up to the amount.

        Raises:
            BadContractSignature, ReceiptMismatch: forged, or a signature missing.
            UsageError: `ours` is not a party of it.
            LedgerFull, LedgerError: nothing was recorded.
        """
        signed.verify()
        p = signed.payment
        if ours not in (p.payer, p.payee):
            raise UsageError(f"{ours} is not a party of payment {p.id[:12]}")
        role: PaymentRole = "payer" if ours == p.payer else "payee"
        now = self._now_ms()

        def record(c: sqlite3.Connection) -> tuple[Entry, bool]:
            done = c.execute("SELECT seq FROM entries WHERE kind = 'payment' AND receipt_id = ?",
                             (p.id,)).fetchone()
            if done is not None:
                return store.entry_at(c, done[0]), False
            held = store.balance(c, p.payee, p.currency).available if role == "payer" \
                else Credits(0)
            body: dict[str, Any] = {
                "payment_id": p.id, "payment": signed.model_dump(mode="json"), "role": role,
                "payer": p.payer, "payee": p.payee, "currency": p.currency,
                "amount": p.amount.micro, "taken": min(held, p.amount).micro, "at_ms": now}
            return store.append(c, "payment", body, receipt_id=p.id), True
        entry, new = await self._write(record)
        if new:
            logger.info("payment %s of %s from %s to %s recorded at entry %d", p.id[:12],
                        p.amount, p.payer, p.payee, entry.seq,
                        extra={"event": "payment_recorded", "payment_id": p.id})
        return entry, new

    async def payments(self) -> list[SignedPayment]:
        """Every payment on these books, oldest first."""
        def read(c: sqlite3.Connection) -> list[SignedPayment]:
            return [SignedPayment.model_validate(json.loads(raw)["payment"])
                    for (raw,) in c.execute("SELECT body FROM entries WHERE kind = 'payment' "
                                            "ORDER BY seq")]
        return await self._run(read)
