"""The SQLite side of disputes: recording one, ending it by a resolution, reading them.

Runs on the ledger's worker thread, like marketplace.contracts.ledger_store, whose entries
and transactions it uses; the rules are in marketplace.contracts.dispute.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .dispute import SignedDispute, SignedResolution
from .errors import AlreadySettled, LedgerError
from .ledger_store import Entry, Settlement, agreement, append, entry_at, role_of, settlement_of


def dispute_of(c: sqlite3.Connection, agreement_id: str) -> SignedDispute | None:
    """The dispute recorded over `agreement_id`, or None."""
    row = c.execute("SELECT body FROM entries WHERE kind = 'dispute' AND agreement_id = ?",
                    (agreement_id,)).fetchone()
    return None if row is None else SignedDispute.from_wire(
        bytes.fromhex(json.loads(row[0])["dispute"]))


def resolution_of(c: sqlite3.Connection, agreement_id: str) -> SignedResolution | None:
    """The resolution that ended the dispute over `agreement_id`, or None."""
    row = c.execute("SELECT body FROM entries WHERE kind = 'resolve' AND agreement_id = ?",
                    (agreement_id,)).fetchone()
    return None if row is None else SignedResolution.model_validate(
        json.loads(row[0])["resolution"])


def resolution_in(raw: bytes | None) -> SignedResolution | None:
    """The resolution a ``resolve`` entry's body carries (None for no entry)."""
    return None if raw is None else SignedResolution.model_validate(
        json.loads(raw)["resolution"])


def record_dispute(c: sqlite3.Connection, dispute: SignedDispute,
                   delivery: dict[str, Any] | None, now: int) -> tuple[Entry, bool]:
    """Record `dispute` (verified by the caller) once; (its entry, whether it is new)."""
    agreement_id = dispute.dispute.agreement_id
    done = c.execute("SELECT seq FROM entries WHERE kind = 'dispute' AND agreement_id = ?",
                     (agreement_id,)).fetchone()
    if done is not None:
        return entry_at(c, done[0]), False
    role = role_of(c, agreement_id)
    settled = settlement_of(c, agreement_id)
    if settled is not None and settled.verdict == "expired":
        raise AlreadySettled(f"agreement {agreement_id[:12]} expired unfunded; there is "
                             "nothing to dispute")
    entry = append(c, "dispute", {
        "agreement_id": agreement_id, "dispute_id": dispute.id,
        "dispute": dispute.to_wire().hex(), "delivery": delivery, "role": role,
        "raised_by": dispute.dispute.raised_by, "after_settlement": settled is not None,
        "at_ms": now}, agreement_id=agreement_id)
    return entry, True


def resolve(c: sqlite3.Connection, signed: SignedResolution, now: int) -> Settlement:
    """End the dispute over an agreement by `signed` (verified by the caller), once.

    While these books hold the escrow, the resolution settles it; when a receipt settled it
    before the dispute arrived, the difference moves between the two accounts instead.
    """
    resolution = signed.resolution
    agreement_id = resolution.agreement_id
    kept = resolution_of(c, agreement_id)
    if kept is not None:
        if kept.resolution.id != resolution.id:
            raise AlreadySettled(f"agreement {agreement_id[:12]} was resolved by "
                                 f"{kept.resolution.id[:12]}")
        return Settlement(agreement_id, resolution.id, "resolved", resolution.to_seller,
                          resolution.to_buyer, 0, duplicate=True)
    if dispute_of(c, agreement_id) is None:
        raise LedgerError(f"agreement {agreement_id[:12]} is not disputed on these books; "
                          "its receipt settles it")
    recorded = agreement(c, agreement_id)
    a, terms = recorded.agreement, recorded.agreement.terms
    previous = settlement_of(c, agreement_id)
    body: dict[str, Any] = {
        "agreement_id": agreement_id, "resolution_id": resolution.id,
        "resolution": signed.model_dump(mode="json"), "role": role_of(c, agreement_id),
        "buyer": a.buyer, "seller": a.seller, "currency": terms.currency,
        "price": terms.price.micro, "to_seller": resolution.to_seller.micro,
        "to_buyer": resolution.to_buyer.micro, "penalty": resolution.penalty.micro,
        "settles": previous is None,
        "adjust": 0 if previous is None else (resolution.to_seller - previous.to_seller).micro,
        "at_ms": now}
    if previous is None:
        entry = append(c, "resolve", body, agreement_id=agreement_id, settled=agreement_id,
                       receipt_id=resolution.id)
    else:
        entry = append(c, "resolve", body, agreement_id=agreement_id)
    return Settlement(agreement_id, resolution.id, "resolved", resolution.to_seller,
                      resolution.to_buyer, entry.seq)
