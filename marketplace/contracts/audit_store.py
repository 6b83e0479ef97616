"""The audit log's tables, in the ledger's SQLite database (used by `ledger_audit`).

Why the ledger's file and not one of its own: an access is recorded on the ledger's hash
chain (``access`` entries, which `Ledger.access_events` reads) and as a leaf of the Merkle
log in one transaction, so a crash leaves both or neither; the node has one file to back up
and one worker thread on it. The tables:

- ``audit_leaves``: the log itself, one leaf (an `AuditEntry`'s bytes) per index; triggers
  refuse UPDATE and DELETE (whoever holds the file can drop them; partners holding signed
  heads catch what follows, see marketplace.contracts.audit_log).
- ``audit_meta``: the newest head this node signed (heads never go back in time), and the
  first time the log stopped extending it.
- ``audit_outbox``: per partner agent (a row from its first entry on), the first entry not
  yet taken by it and the size of the last head it took (what the next consistency proof
  starts from).
- ``audit_partners``: per partner log, the newest head accepted and whether it was caught.
- ``audit_received``: partners' entries about our agents, with the size of the head that
  proved them (at most `RECEIVED_PER_LOG` per log and `RECEIVED_TOTAL` in all, the oldest
  dropped first).
- ``audit_evidence``: contradicting heads (at most `EVIDENCE_PER_LOG` per log).

All functions run on the ledger's worker thread inside its transactions.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .audit_log import AuditEntry, AuditEvidence, SignedTreeHead

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_leaves (
    idx    INTEGER PRIMARY KEY,
    leaf   BLOB NOT NULL,
    agent  TEXT NOT NULL,
    owner  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_leaves_owner ON audit_leaves (owner, idx);
CREATE TRIGGER IF NOT EXISTS audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_outbox (
    owner      TEXT PRIMARY KEY,
    next_index INTEGER NOT NULL,
    acked_size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_partners (
    log        TEXT PRIMARY KEY,
    head       TEXT NOT NULL,
    status     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    checked_ms INTEGER NOT NULL,
    sender     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_received (
    log       TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    entry     TEXT NOT NULL,
    head_size INTEGER NOT NULL,
    PRIMARY KEY (log, idx)
);
CREATE TABLE IF NOT EXISTS audit_evidence (
    id   INTEGER PRIMARY KEY,
    log  TEXT NOT NULL,
    body TEXT NOT NULL
);
"""

RECEIVED_PER_LOG = 10_000
"""Entries kept of one partner's log about our agents (the oldest dropped first)."""
RECEIVED_TOTAL = 100_000
"""Entries kept of all partners' logs together (the oldest dropped first): about 60 MB."""
EVIDENCE_PER_LOG = 16
"""Contradictions kept of one partner's log (the first ones: they are what counts)."""
MAX_PARTNER_LOGS = 10_000
"""Partner logs whose heads are kept; a head of a new log beyond this is refused."""


@dataclass(frozen=True)
class PartnerLog:
    """What we hold of one partner's log: its newest accepted head and its standing."""

    head: SignedTreeHead
    status: str
    """``ok`` or the outcome that caught it (`audit_log.CAUGHT`)."""
    detail: str
    checked_ms: int
    sender: str
    """The partner's agent that sent the last head."""


def leaves(c: sqlite3.Connection) -> list[bytes]:
    """Every leaf in index order."""
    return [bytes(row[0]) for row in c.execute("SELECT leaf FROM audit_leaves ORDER BY idx")]


def append_leaf(c: sqlite3.Connection, index: int, entry: AuditEntry) -> None:
    """Write `entry` as leaf `index`; a new partner gets its place in the outbox."""
    c.execute("INSERT INTO audit_leaves (idx, leaf, agent, owner) VALUES (?, ?, ?, ?)",
              (index, entry.leaf(), entry.agent, entry.owner))
    if entry.owner:
        c.execute("INSERT OR IGNORE INTO audit_outbox (owner, next_index, acked_size) "
                  "VALUES (?, ?, 0)", (entry.owner, index))


def entries(c: sqlite3.Connection, after: int, limit: int,
            owner: str | None = None) -> list[tuple[int, AuditEntry]]:
    """Up to `limit` entries from index `after` on (only `owner`'s, if given)."""
    if owner is None:
        rows = c.execute("SELECT idx, leaf FROM audit_leaves WHERE idx >= ? ORDER BY idx "
                         "LIMIT ?", (after, limit)).fetchall()
    else:
        rows = c.execute("SELECT idx, leaf FROM audit_leaves WHERE owner = ? AND idx >= ? "
                         "ORDER BY idx LIMIT ?", (owner, after, limit)).fetchall()
    return [(int(i), AuditEntry.from_leaf(bytes(leaf))) for i, leaf in rows]


def last_head(c: sqlite3.Connection) -> SignedTreeHead | None:
    """The newest head this node signed of its own log."""
    row = c.execute("SELECT value FROM audit_meta WHERE key = 'head'").fetchone()
    return None if row is None else SignedTreeHead.model_validate_json(row[0])


def keep_head(c: sqlite3.Connection, head: SignedTreeHead) -> None:
    """Remember `head` as the newest this node signed."""
    c.execute("INSERT OR REPLACE INTO audit_meta (key, value) VALUES ('head', ?)",
              (head.model_dump_json(),))


def keep_problem(c: sqlite3.Connection, problem: str) -> None:
    """Remember the first time our log stopped extending a head we signed."""
    c.execute("INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('problem', ?)",
              (problem,))


def problem(c: sqlite3.Connection) -> str | None:
    """What `keep_problem` remembered, if anything."""
    row = c.execute("SELECT value FROM audit_meta WHERE key = 'problem'").fetchone()
    return None if row is None else str(row[0])


def pending(c: sqlite3.Connection, hosted: set[str]) -> list[tuple[str, int, int]]:
    """(owner, first index not taken, acked size) of every partner with entries to report.

    Entries about our own agents (or nobody's data) stay home.
    """
    # One index probe per partner (audit_leaves_owner), not a walk of the whole log.
    rows = c.execute(
        "SELECT o.owner, o.next_index, o.acked_size FROM audit_outbox o WHERE EXISTS "
        "(SELECT 1 FROM audit_leaves l WHERE l.owner = o.owner AND l.idx >= o.next_index) "
        "ORDER BY o.next_index").fetchall()
    return [(str(o), int(n), int(a)) for o, n, a in rows if o not in hosted]


def reported(c: sqlite3.Connection, owner: str, next_index: int, acked_size: int) -> None:
    """`owner` took every entry before `next_index`, with a head of `acked_size`."""
    c.execute("INSERT OR REPLACE INTO audit_outbox (owner, next_index, acked_size) "
              "VALUES (?, ?, ?)", (owner, next_index, acked_size))


def partner(c: sqlite3.Connection, log: str) -> PartnerLog | None:
    """What we hold of `log`'s audit log."""
    row = c.execute("SELECT head, status, detail, checked_ms, sender FROM audit_partners "
                    "WHERE log = ?", (log,)).fetchone()
    return None if row is None else _partner(row)


def partners(c: sqlite3.Connection) -> list[PartnerLog]:
    """Every partner log, the caught ones first."""
    rows = c.execute("SELECT head, status, detail, checked_ms, sender FROM audit_partners "
                     "ORDER BY status = 'ok', log").fetchall()
    return [_partner(row) for row in rows]


def partner_count(c: sqlite3.Connection) -> int:
    """How many partner logs are kept."""
    return int(c.execute("SELECT COUNT(*) FROM audit_partners").fetchone()[0])


def keep_partner(c: sqlite3.Connection, kept: PartnerLog) -> None:
    """Write what we hold of a partner's log."""
    c.execute("INSERT OR REPLACE INTO audit_partners (log, head, status, detail, checked_ms, "
              "sender) VALUES (?, ?, ?, ?, ?, ?)",
              (kept.head.log, kept.head.model_dump_json(), kept.status, kept.detail,
               kept.checked_ms, kept.sender))


def keep_received(c: sqlite3.Connection, log: str, found: list[tuple[int, AuditEntry]],
                  head_size: int) -> None:
    """Keep a partner's entries about our agents, proven in its head of `head_size`."""
    for index, entry in found:
        c.execute("INSERT OR REPLACE INTO audit_received (log, idx, entry, head_size) "
                  "VALUES (?, ?, ?, ?)", (log, index, entry.model_dump_json(), head_size))
    c.execute("DELETE FROM audit_received WHERE log = ? AND idx NOT IN (SELECT idx FROM "
              "audit_received WHERE log = ? ORDER BY idx DESC LIMIT ?)",
              (log, log, RECEIVED_PER_LOG))
    c.execute("DELETE FROM audit_received WHERE rowid IN (SELECT rowid FROM audit_received "
              "ORDER BY rowid DESC LIMIT -1 OFFSET ?)", (RECEIVED_TOTAL,))


def received(c: sqlite3.Connection, log: str | None,
             limit: int) -> list[tuple[str, int, AuditEntry, int]]:
    """The newest `limit` entries partners sent about our agents: (log, index, entry, size)."""
    rows = c.execute("SELECT log, idx, entry, head_size FROM audit_received "
                     "WHERE ? IS NULL OR log = ? ORDER BY rowid DESC LIMIT ?",
                     (log, log, limit)).fetchall()
    return [(str(lg), int(i), AuditEntry.model_validate_json(e), int(s))
            for lg, i, e, s in rows]


def keep_evidence(c: sqlite3.Connection, evidence: AuditEvidence) -> None:
    """Keep a contradiction, unless `EVIDENCE_PER_LOG` of that log are kept already."""
    log = evidence.held.log
    kept = c.execute("SELECT COUNT(*) FROM audit_evidence WHERE log = ?", (log,)).fetchone()[0]
    if kept < EVIDENCE_PER_LOG:
        c.execute("INSERT INTO audit_evidence (log, body) VALUES (?, ?)",
                  (log, evidence.model_dump_json()))


def evidence(c: sqlite3.Connection, log: str | None = None) -> list[AuditEvidence]:
    """Every kept contradiction (of `log` only, if given), oldest first."""
    rows = c.execute("SELECT body FROM audit_evidence WHERE ? IS NULL OR log = ? ORDER BY id",
                     (log, log)).fetchall()
    return [AuditEvidence.model_validate_json(row[0]) for row in rows]


def _partner(row: tuple[str, str, str, int, str]) -> PartnerLog:
    head, status, detail, checked_ms, sender = row
    return PartnerLog(SignedTreeHead.model_validate_json(head), status, detail,
                      int(checked_ms), sender)
