"""The ledger's dispute operations: record a dispute, end it by a resolution, list them.

A mixin of `marketplace.contracts.ledger.Ledger` (which runs every call on the ledger's
worker thread); the rules are in marketplace.contracts.dispute, the SQL in ledger_store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from . import dispute_store as disputes
from . import ledger_store as store
from .agreement import SignedAgreement
from .dispute import SignedDispute, SignedResolution, check_dispute
from .ledger_base import LedgerBase
from .ledger_store import Role, Settlement

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class DisputeRecord:
    """A dispute on these books: the agreement, the signed dispute, its evidence, its end."""

    seq: int
    signed: SignedAgreement
    dispute: SignedDispute
    delivery: dict[str, Any] | None
    """The seller's signed delivery in evidence (None: it delivered nothing)."""
    role: Role
    after_settlement: bool
    """True when a receipt had settled these books before the dispute reached them."""
    resolution: SignedResolution | None


class DisputeBooks(LedgerBase):
    """Disputes and resolutions on a ledger (mixed into `Ledger`)."""

    async def record_dispute(self, dispute: SignedDispute,
                             delivery: Mapping[str, Any] | None = None) -> bool:
        """Record `dispute` over an agreement on these books, once; True when it is new.

        `delivery` is the seller's signed delivery in evidence (default: the one these books
        kept). The dispute must be signed by a party and state exactly the conflicts the
        evidence gives (`dispute.check_dispute`). From then on `settle` refuses a receipt
        for the agreement: the money stays held until a `resolve`.

        Raises:
            UnknownAgreement: the agreement was never recorded here.
            BadContractSignature, ReceiptMismatch: forged, or not borne out by the evidence.
            AlreadySettled: the agreement expired unfunded.
            LedgerFull, LedgerError: nothing was recorded.
        """
        agreement_id = dispute.dispute.agreement_id
        signed = await self.agreement(agreement_id)
        evidence = dict(delivery) if delivery is not None else await self.delivery(agreement_id)
        check_dispute(signed, dispute, evidence)
        now = self._now_ms()
        entry, new = await self._write(lambda c: disputes.record_dispute(c, dispute, evidence, now))
        logger.debug("dispute %s over %s at entry %d", dispute.id[:12], agreement_id[:12],
                     entry.seq)
        return new

    async def resolve(self, signed: SignedResolution) -> Settlement:
        """End the dispute over an agreement by a resolution both parties or its arbiter signed.

        Raises:
            UnknownAgreement: the agreement was never recorded here.
            BadContractSignature, ReceiptMismatch: the resolution does not verify, or lacks a
                signature.
            AlreadySettled: another resolution ended it.
            LedgerFull, LedgerError: not disputed here; nothing was written.
        """
        signed.verify_against(await self.agreement(signed.resolution.agreement_id))
        now = self._now_ms()
        return await self._write(lambda c: disputes.resolve(c, signed, now))

    async def dispute(self, agreement_id: str) -> SignedDispute | None:
        """The dispute recorded over `agreement_id`, or None."""
        return await self._run(lambda c: disputes.dispute_of(c, agreement_id))

    async def disputes(self) -> list[DisputeRecord]:
        """Every dispute on these books, oldest first, with its evidence and resolution."""
        def read(c: sqlite3.Connection) -> list[DisputeRecord]:
            rows = c.execute("SELECT seq, body FROM entries WHERE kind = 'dispute' "
                             "ORDER BY seq").fetchall()
            found = []
            for seq, raw in rows:
                body = json.loads(raw)
                agreement_id = body["agreement_id"]
                found.append(DisputeRecord(
                    seq=seq, signed=store.agreement(c, agreement_id),
                    dispute=SignedDispute.from_wire(bytes.fromhex(body["dispute"])),
                    delivery=body["delivery"], role=body["role"],
                    after_settlement=body["after_settlement"],
                    resolution=disputes.resolution_of(c, agreement_id)))
            return found
        return await self._run(read)

    async def open_disputes(self) -> int:
        """How many disputes on these books no resolution has ended (metrics, web view)."""
        def read(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT COUNT(*) FROM entries d WHERE d.kind = 'dispute' AND "
                            "d.agreement_id NOT IN (SELECT agreement_id FROM entries WHERE "
                            "kind = 'resolve')").fetchone()
            return int(row[0])
        return await self._run(read)

    async def disputes_recorded(self) -> int:
        """How many disputes these books recorded, resolved or not (metrics)."""
        def read(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT COUNT(*) FROM entries WHERE kind = 'dispute'")
                       .fetchone()[0])
        return await self._run(read)
