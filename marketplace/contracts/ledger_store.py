"""The SQLite side of the ledger: schema, connection, transactions, entries and balances.

Everything here runs on the ledger's own worker thread (see marketplace.contracts.ledger,
which owns the thread and is the only caller). sqlite3 errors are translated once, in
`guarded`, into the LedgerError classes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from aaex_agents.money import ZERO, Credits

from . import audit_store
from .agreement import SignedAgreement
from .chain import (
    EntryKind,
    LedgerReport,
    Replay,
    canonical_body,
    effects,
    entry_hash,
    genesis,
    money_signing_bytes,
)
from .checkpoint import Checkpoint
from .dispute import SignedResolution
from .errors import (
    AlreadySettled,
    Disputed,
    EscrowHeld,
    LedgerCorrupt,
    LedgerError,
    LedgerFull,
    LedgerTampered,
    UnknownAgreement,
)
from .expiry import SignedExpiry
from .receipt import SignedReceipt
from .sla import Verdict

Outcome = Verdict | Literal["expired", "resolved"]
"""How an agreement closed: a receipt's verdict, ``expired`` (never escrowed) or ``resolved``
(a dispute's resolution)."""

T = TypeVar("T")

Role = Literal["buyer", "seller"]
"""Which side of an agreement these books keep: a purchase or a sale."""

LEDGER_FORMAT = "aaex-ledger/3"
"""The file's schema version, in meta. /3 chains from a genesis that binds the owner and a
random ledger id, and signs each deposit and withdrawal at its place (seq, previous hash);
files of /1 and /2 are refused with that reason (see `_check_format`)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL,
    body       BLOB NOT NULL,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL,
    agreement_id TEXT,
    recorded   TEXT UNIQUE,  -- agreement id, on its 'agreement' entry only: recorded once
    delivered  TEXT UNIQUE,  -- agreement id, on its 'delivery' entry only: one delivery
    settled    TEXT UNIQUE,  -- agreement id, on its release/refund entry only: paid once
    receipt_id TEXT UNIQUE   -- on the settling entry: one receipt settles one agreement
);
CREATE INDEX IF NOT EXISTS entries_by_agreement ON entries (agreement_id);
-- the recovery pass looks up the 'notified' entries every few seconds
CREATE INDEX IF NOT EXISTS entries_by_kind ON entries (kind, agreement_id);
-- a dispute and a resolution are each recorded once per agreement
CREATE UNIQUE INDEX IF NOT EXISTS one_dispute ON entries (agreement_id) WHERE kind = 'dispute';
CREATE UNIQUE INDEX IF NOT EXISTS one_resolution ON entries (agreement_id) WHERE kind = 'resolve';
CREATE TABLE IF NOT EXISTS balances (
    address   TEXT NOT NULL,
    currency  TEXT NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0),
    held      INTEGER NOT NULL CHECK (held >= 0),
    PRIMARY KEY (address, currency)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
-- half-signed offers (payments, resolutions) waiting for the other party: not money yet,
-- so outside the hash chain, but kept through a restart (marketplace.contracts.ledger_offers)
CREATE TABLE IF NOT EXISTS kept_offers (
    kind    TEXT NOT NULL,
    key     TEXT NOT NULL,
    side    TEXT NOT NULL,
    body    TEXT NOT NULL,
    kept    INTEGER PRIMARY KEY AUTOINCREMENT,
    UNIQUE (kind, key, side)
);
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""

_OLD_FORMATS = ("aaex-ledger/1", "aaex-ledger/2")

# sqlite3 primary result codes (sqlite_errorcode & 0xff) that have their own error class.
_SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 11, 13, 26


@dataclass(frozen=True, slots=True, repr=False)
class Entry:
    """One ledger entry as stored; `body` is its decoded canonical JSON."""

    seq: int
    kind: EntryKind
    body: dict[str, Any]
    prev_hash: str
    hash: str

    def __repr__(self) -> str:
        return f"<Entry {self.seq} {self.kind} {self.hash[:12]}>"


@dataclass(frozen=True, slots=True)
class Balance:
    """Funds of one address in one currency."""

    available: Credits = ZERO
    """Free to spend or to hold for a new agreement."""
    held: Credits = ZERO
    """In escrow: a buyer's price for agreements not yet settled."""


@dataclass(frozen=True, slots=True)
class Settlement:
    """How an agreement was settled."""

    agreement_id: str
    receipt_id: str
    """The settling receipt's id (the expiry's, for an expired agreement)."""
    verdict: Outcome
    to_seller: Credits
    """The price (on met), or what a per-token sale used of it."""
    to_buyer: Credits
    """The price back (breached, not delivered), or what a per-token sale left of it."""
    seq: int
    """The settling entry."""
    duplicate: bool = False
    """True when this receipt had already been settled and nothing moved this time."""


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """An audit record: `actor` used `data` for `purpose` at `at_ms`."""

    seq: int
    actor: str
    data: str
    purpose: str
    at_ms: int
    agreement_id: str | None = None


@dataclass(frozen=True, slots=True)
class OpenAgreement:
    """An agreement not yet settled on these books, and what is known of it."""

    signed: SignedAgreement
    role: Role
    task: dict[str, Any] | None
    """The task as the buyer sent it (purchases only)."""
    delivery: dict[str, Any] | None
    """The delivery recorded for it, if one arrived (or was made)."""
    use: dict[str, Any] | None = None
    """The grant the task's data goes under, as the buyer recorded it (purchases only)."""


def connect(path: Path | None, max_bytes: int | None, owner: str | None = None, *,
            read_only: bool = False) -> sqlite3.Connection:
    """Open the SQLite file with the ledger's schema and pragmas (creating it if needed).

    A new file is created 0600 (SQLite gives its WAL and shared-memory files the same mode)
    in a folder created 0700: it holds every agent's money. With `read_only`, the file must
    exist and is opened read-only (an SQLite ``mode=ro`` URI): nothing is created or written,
    not even the schema, so an audit cannot change what it audits.
    """
    if read_only:
        return _connect_read_only(path, owner)
    if path is not None:
        _create_private(path)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a transaction
    # is exactly one ledger operation and takes the write lock before it reads the head.
    connection = sqlite3.connect(str(path) if path else ":memory:", isolation_level=None,
                                 check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        if max_bytes is not None:
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count={max_bytes // page_size}")
        connection.executescript(_SCHEMA)
        connection.executescript(audit_store.SCHEMA)
        connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('format', ?)",
                           (LEDGER_FORMAT,))
        _check_format(connection, path)
        # The id and the owner are hashed into the genesis, so they are written only while
        # the ledger has no entries: one that lost them later stays without (verify says so).
        connection.execute("INSERT OR IGNORE INTO meta (key, value) SELECT 'ledger_id', ? "
                           "WHERE NOT EXISTS (SELECT 1 FROM entries)", (os.urandom(16).hex(),))
        if owner is not None:
            connection.execute("INSERT OR IGNORE INTO meta (key, value) SELECT 'owner', ? "
                               "WHERE NOT EXISTS (SELECT 1 FROM entries)", (owner,))
            kept = connection.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
            if kept is None:
                raise LedgerError(f"ledger {path} holds entries but records no owner (its "
                                  "owner record was removed, or it was kept without a node's "
                                  f"key); {owner} does not take it over: audit it with "
                                  f"`aaex ledger verify {path}`")
            if kept[0] != owner:
                raise LedgerError(f"ledger {path} belongs to node {kept[0]}, not to {owner}; "
                                  "open it with that node's key")
            _verify_for_owner(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _verify_for_owner(connection: sqlite3.Connection, path: Path | None) -> None:
    """The owner's key never writes on a tampered chain: verify it first (linear)."""
    try:
        verify(connection, None)
    except LedgerTampered as exc:
        raise LedgerTampered(exc.seq, f"{exc.problem}; the owner's key does not write on a "
                             f"tampered ledger ({path or ':memory:'}; audit it with `aaex "
                             "ledger verify`)") from exc


def _create_private(path: Path) -> None:
    """Create the folder (0700) and an empty file (0600) for a new ledger at `path`."""
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot create ledger {path}: {exc.strerror}") from exc
    os.close(descriptor)  # an empty file is an empty SQLite database


def _connect_read_only(path: Path | None, owner: str | None) -> sqlite3.Connection:
    if path is None:
        raise LedgerError("a ledger in memory cannot be opened read-only; give its file")
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}: the file does not exist")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA busy_timeout=5000")
        _check_format(connection, path)
        kept = connection.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
        if owner is not None and kept is not None and kept[0] != owner:
            raise LedgerError(f"ledger {path} belongs to node {kept[0]}, not to {owner}; "
                              "open it with that node's key")
    except sqlite3.OperationalError as exc:
        connection.close()
        if "no such table" in str(exc):
            raise LedgerCorrupt(f"{path} is an SQLite database but not an AAEX ledger") from exc
        raise
    except BaseException:
        connection.close()
        raise
    return connection


def _check_format(connection: sqlite3.Connection, path: Path | None) -> None:
    found = connection.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
    if found is not None and isinstance(found[0], str) and found[0] in _OLD_FORMATS:
        # Converting would re-hash every entry and re-sign every deposit: the history that
        # partners hold checkpoints of would be rewritten, so nothing converts it silently.
        raise LedgerError(f"ledger {path} is in the older format {found[0]}, whose chain does "
                          f"not bind its owner and whose deposits can be copied; this release "
                          f"keeps {LEDGER_FORMAT} and does not convert it: settle and withdraw "
                          "with the release that wrote it, then move the file aside to start "
                          "a new ledger")
    if found is None or found[0] != LEDGER_FORMAT:
        raise LedgerCorrupt(f"{path} is an SQLite database but not an AAEX ledger "
                            f"(format {found[0] if found else None!r})")


def guarded(connection: sqlite3.Connection | None, work: Callable[[Any], T],
             path: Path | None) -> T:
    """Run `work`, translating sqlite3 errors once, here, into LedgerError classes."""
    try:
        return work(connection)
    except sqlite3.Error as exc:
        where = path or ":memory:"
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == _SQLITE_FULL:
            raise LedgerFull(f"ledger {where} is full (disk or size limit); nothing was "
                             f"written: {exc}") from exc
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise LedgerCorrupt(f"ledger {where} is damaged or not an SQLite database: "
                                f"{exc}; restore it from a copy") from exc
        raise LedgerError(f"ledger {where} failed: {exc}") from exc


def transaction(c: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work` as one BEGIN IMMEDIATE ... COMMIT transaction; roll back on any error."""
    c.execute("BEGIN IMMEDIATE")
    try:
        result = work(c)
        c.execute("COMMIT")
    except BaseException:
        if c.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
            c.execute("ROLLBACK")
        raise
    return result


def identity_of(c: sqlite3.Connection) -> tuple[str | None, str | None]:
    """The (owner, ledger id) recorded in meta, which the genesis binds; None when missing."""
    found = dict(c.execute("SELECT key, value FROM meta WHERE key IN ('owner', 'ledger_id')"))
    owner, ledger_id = found.get("owner"), found.get("ledger_id")
    return (None if owner is None else str(owner),
            None if ledger_id is None else str(ledger_id))


def head(c: sqlite3.Connection) -> tuple[int, bytes]:
    """The head (seq, hash) of the chain; (0, its genesis) when it is empty."""
    seq = c.execute("SELECT value FROM meta WHERE key = 'head_seq'").fetchone()
    digest = c.execute("SELECT value FROM meta WHERE key = 'head_hash'").fetchone()
    if seq is None or digest is None:
        return 0, genesis(*identity_of(c))
    return int(seq[0]), bytes(digest[0])


def append(c: sqlite3.Connection, kind: EntryKind, body: dict[str, Any], *,
            agreement_id: str | None = None, recorded: str | None = None,
            settled: str | None = None, receipt_id: str | None = None,
            delivered: str | None = None) -> Entry:
    """Append one entry after the head and apply its balance effects (caller's transaction)."""
    prev_seq, prev_hash = head(c)
    seq = prev_seq + 1
    raw = canonical_body(body)
    digest = entry_hash(prev_hash, seq, kind, raw)
    for address, currency, d_available, d_held in effects(kind, body):
        # Two statements, not an upsert: SQLite checks the CHECK constraints on an upsert's
        # VALUES row even when it resolves to the UPDATE, and a hold's delta is negative.
        c.execute("INSERT OR IGNORE INTO balances (address, currency, available, held) "
                  "VALUES (?, ?, 0, 0)", (address, currency))
        c.execute("UPDATE balances SET available = available + ?, held = held + ? "
                  "WHERE address = ? AND currency = ?", (d_available, d_held, address, currency))
    c.execute("INSERT INTO entries (seq, kind, body, prev_hash, hash, agreement_id, recorded, "
              "settled, receipt_id, delivered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (seq, kind, raw, prev_hash, digest, agreement_id, recorded, settled, receipt_id,
               delivered))
    c.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                  (("head_seq", seq), ("head_hash", digest)))
    return Entry(seq, kind, body, prev_hash.hex(), digest.hex())


def append_money(c: sqlite3.Connection, kind: EntryKind, body: dict[str, Any],
                 sign: Callable[[bytes], bytes]) -> Entry:
    """Append a deposit or withdrawal, signed by `sign` (the owner's key) at its place.

    The signature covers the seq and previous hash this entry gets (caller's transaction,
    which holds the write lock, so the head cannot move in between).
    """
    prev_seq, prev_hash = head(c)
    signing = money_signing_bytes(body, seq=prev_seq + 1, prev_hash=prev_hash)
    return append(c, kind, {**body, "signature": sign(signing).hex()})


def row_entry(row: tuple[int, str, bytes, bytes, bytes]) -> Entry:
    """An `Entry` from an entries row."""
    seq, kind, raw, prev_hash, digest = row
    return Entry(seq, kind, json.loads(raw), bytes(prev_hash).hex(),  # type: ignore[arg-type]
                 bytes(digest).hex())


def entry_at(c: sqlite3.Connection, seq: int) -> Entry:
    """The entry at `seq`."""
    row = c.execute("SELECT seq, kind, body, prev_hash, hash FROM entries WHERE seq = ?",
                    (seq,)).fetchone()
    return row_entry(row)


def balance(c: sqlite3.Connection, address: str, currency: str) -> Balance:
    """The balance of `address` in `currency` (zero when never seen)."""
    row = c.execute("SELECT available, held FROM balances WHERE address = ? AND currency = ?",
                    (address, currency)).fetchone()
    return Balance(Credits(row[0]), Credits(row[1])) if row else Balance()


def decode_agreement(raw: bytes) -> SignedAgreement:
    """The signed agreement stored in an agreement entry's body."""
    return SignedAgreement.from_wire(bytes.fromhex(json.loads(raw)["wire"]))


def agreement(c: sqlite3.Connection, agreement_id: str) -> SignedAgreement:
    """The recorded agreement `agreement_id`; `UnknownAgreement` when none."""
    row = c.execute("SELECT body FROM entries WHERE recorded = ?", (agreement_id,)).fetchone()
    if row is None:
        raise UnknownAgreement(f"agreement {agreement_id[:12]} was never recorded in this "
                               "ledger; record the signed agreement before settling it")
    return decode_agreement(row[0])


def settlement_of(c: sqlite3.Connection, agreement_id: str) -> Settlement | None:
    """How `agreement_id` was settled, or None."""
    row = c.execute("SELECT seq, body FROM entries WHERE settled = ?",
                    (agreement_id,)).fetchone()
    if row is None:
        return None
    body = json.loads(row[1])
    return Settlement(agreement_id, body["receipt_id"], body["verdict"],
                      Credits(body["to_seller"]), Credits(body["to_buyer"]), row[0])


def settle(c: sqlite3.Connection, signed: SignedReceipt, now: int) -> Settlement:
    """Pay or refund by `signed`, once (see `Ledger.settle`)."""
    receipt = signed.receipt
    agreement_id, receipt_id = receipt.agreement_id, signed.id
    previous = settlement_of(c, agreement_id)
    if previous is not None:
        if previous.receipt_id != receipt_id:
            raise AlreadySettled(f"agreement {agreement_id[:12]} was settled by receipt "
                                 f"{previous.receipt_id[:12]} at entry {previous.seq}; receipt "
                                 f"{receipt_id[:12]} pays nothing")
        return replace(previous, duplicate=True)
    recorded = agreement(c, agreement_id)
    signed.verify_against(recorded)
    if c.execute("SELECT 1 FROM entries WHERE kind = 'dispute' AND agreement_id = ?",
                 (agreement_id,)).fetchone() is not None:
        raise Disputed(f"agreement {agreement_id[:12]} is disputed on these books; only a "
                       "resolution both parties (or its arbiter) sign settles it")
    terms = recorded.agreement.terms
    to_seller, to_buyer = receipt.release, receipt.refund
    kind: EntryKind = "release" if receipt.verdict == "met" else "refund"
    entry = append(c, kind, {
        "agreement_id": agreement_id, "receipt_id": receipt_id,
        "receipt": signed.to_wire().hex(), "verdict": receipt.verdict,
        "role": role_of(c, agreement_id), "buyer": receipt.buyer, "seller": receipt.seller,
        "currency": terms.currency, "price": terms.price.micro,
        "penalty": receipt.penalty.micro, "to_seller": to_seller.micro,
        "to_buyer": to_buyer.micro, "at_ms": now},
        agreement_id=agreement_id, settled=agreement_id, receipt_id=receipt_id)
    return Settlement(agreement_id, receipt_id, receipt.verdict, to_seller, to_buyer, entry.seq)


def close_expired(c: sqlite3.Connection, signed: SignedAgreement, expiry: SignedExpiry,
                  role: Role, now: int) -> Settlement:
    """Close an unescrowed agreement by its verified `expiry` (see `Ledger.close_expired`)."""
    agreement_id, expiry_id = signed.id, expiry.id
    terms = signed.agreement.terms
    previous = settlement_of(c, agreement_id)
    if previous is not None:
        if previous.receipt_id != expiry_id:
            raise AlreadySettled(f"agreement {agreement_id[:12]} was closed by "
                                 f"{previous.receipt_id[:12]} at entry {previous.seq}")
        return replace(previous, duplicate=True)
    if c.execute("SELECT 1 FROM entries WHERE recorded = ?", (agreement_id,)).fetchone() is None:
        append(c, "agreement", {"agreement_id": agreement_id, "wire": signed.to_wire().hex(),
                                "role": role, "at_ms": now},
               agreement_id=agreement_id, recorded=agreement_id)
    recorded_role = role_of(c, agreement_id)
    if c.execute("SELECT 1 FROM entries WHERE kind = 'hold' AND agreement_id = ?",
                 (agreement_id,)).fetchone() is not None:
        raise EscrowHeld(f"agreement {agreement_id[:12]} is escrowed on these books; "
                         "its receipt closes it, not an expiry")
    entry = append(c, "expire", {
        "agreement_id": agreement_id, "receipt_id": expiry_id, "expiry": expiry.to_wire().hex(),
        "verdict": "expired", "reason": expiry.expiry.reason, "role": recorded_role,
        "buyer": signed.agreement.buyer, "seller": signed.agreement.seller,
        "currency": terms.currency, "price": terms.price.micro, "to_seller": 0, "to_buyer": 0,
        "at_ms": now}, agreement_id=agreement_id, settled=agreement_id, receipt_id=expiry_id)
    return Settlement(agreement_id, expiry_id, "expired", ZERO, ZERO, entry.seq)


def closing(kind: str | None, raw: bytes | None
            ) -> SignedReceipt | SignedExpiry | SignedResolution | None:
    """The receipt, expiry or resolution a settling entry carries (None: the agreement is open)."""
    if kind is None or raw is None:
        return None
    body = json.loads(raw)
    if kind == "resolve":
        return SignedResolution.model_validate(body["resolution"])
    if kind == "expire":
        return SignedExpiry.from_wire(bytes.fromhex(body["expiry"]))
    return SignedReceipt.from_wire(bytes.fromhex(body["receipt"]))


def expiry_of(c: sqlite3.Connection, agreement_id: str) -> SignedExpiry | None:
    """The buyer-signed expiry that closed `agreement_id`, or None."""
    row = c.execute("SELECT body FROM entries WHERE settled = ? AND kind = 'expire'",
                    (agreement_id,)).fetchone()
    if row is None:
        return None
    return SignedExpiry.from_wire(bytes.fromhex(json.loads(row[0])["expiry"]))


def verify(c: sqlite3.Connection, expected_head: tuple[int, str] | None,
           checkpoint: Checkpoint | None = None) -> LedgerReport:
    """Replay the whole chain and compare the stored balances with what it implies.

    One read transaction: a node writing meanwhile (a CLI audit of a running node's file)
    is seen as of one moment, never half.
    """
    check = c.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise LedgerCorrupt(f"SQLite finds the ledger damaged: {check}")
    c.execute("BEGIN")
    try:
        owner, ledger_id = identity_of(c)
        if checkpoint is not None:
            checkpoint.verify(owner)
            expected_head = (checkpoint.seq, checkpoint.hash)
        replay = Replay(expected_head, owner=owner, ledger_id=ledger_id)
        for seq, kind, raw, prev, digest, recorded, settles, receipt_id in c.execute(
                "SELECT seq, kind, body, prev_hash, hash, recorded, settled, receipt_id "
                "FROM entries ORDER BY seq"):
            replay.feed(seq, kind, raw, prev, digest, (recorded, settles, receipt_id))
        stored = {(address, currency): [available, held] for address, currency, available,
                  held in c.execute("SELECT address, currency, available, held FROM balances")}
        report = replay.finish(head(c), stored)
    finally:
        c.execute("COMMIT")
    if checkpoint is not None and report.entries < checkpoint.entries:
        raise LedgerTampered(report.entries + 1, f"missing: the checkpoint counted "
                             f"{checkpoint.entries} entries, the file holds {report.entries} "
                             "(the newest entries were cut)")
    return report


def role_of(c: sqlite3.Connection, agreement_id: str) -> Role:
    """Whether these books recorded `agreement_id` as a purchase or a sale."""
    row = c.execute("SELECT body FROM entries WHERE recorded = ?", (agreement_id,)).fetchone()
    if row is None:
        raise UnknownAgreement(f"agreement {agreement_id[:12]} was never recorded here")
    role: Role = json.loads(row[0])["role"]
    return role
