"""The ledger's audit trail: who used which data, when, for what purpose, provably.

A mixin of `marketplace.contracts.ledger.Ledger`. Each use is recorded twice in one
transaction: as an ``access`` entry on the ledger's hash chain (read by `access_events`) and
as a leaf of the node's append-only Merkle log (marketplace.contracts.merkle), whose signed
heads (`audit_head`) leave the node with the entries that concern a partner
(marketplace.trade.audit). The other side of the same exchange is `receive_audit_head`: a
partner's head is judged against the newest one we accepted of its log
(`audit_log.check_head`), and a contradiction is kept as evidence.

The tree is read from the file once, on first use (linear: one SHA-256 per leaf), and kept in
memory (about 64 bytes per entry); every later append, root and proof works on it, on the
ledger's worker thread, after the transaction that wrote the leaf committed.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from typing import get_args

from pydantic import ValidationError

from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity

from . import audit_store
from . import ledger_store as store
from .audit_log import AuditEntry, AuditEvidence, EventKind, HeadCheck, SignedTreeHead, check_head
from .audit_store import PartnerLog
from .errors import LedgerError
from .ledger_base import LedgerBase
from .ledger_store import AccessEvent, Entry
from .merkle import MerkleTree, leaf_hash

ProvenLeaf = tuple[int, AuditEntry, list[bytes]]
"""(index, entry, inclusion proof in the head it travels with)."""


class AuditBooks(LedgerBase):
    """Audit events on a ledger (mixed into `Ledger`)."""

    _merkle: MerkleTree | None = None
    _appended: asyncio.Event | None = None

    @property
    def audit_appended(self) -> asyncio.Event:
        """Set after every `record_access`; whoever reports the log to partners clears it."""
        if self._appended is None:
            self._appended = asyncio.Event()
        return self._appended

    def _tree(self, c: sqlite3.Connection) -> MerkleTree:
        """The Merkle tree of the log (worker thread; read from the file on first use)."""
        if self._merkle is None:
            self._merkle = MerkleTree(leaf_hash(leaf) for leaf in audit_store.leaves(c))
        return self._merkle

    async def record_access(self, actor: str, data: str, purpose: str, *,
                            agreement_id: str | None = None, owner: str = "",
                            content_hash: str = "", grant: str = "",
                            event: EventKind = "used") -> Entry:
        """Append an audit event: `actor` used `data` (of `owner`) for `purpose`, now.

        Args:
            actor: the accessing agent.
            data: the dataset id.
            purpose: what it was used for.
            agreement_id: the agreement the use served, if any.
            owner: the data owner or counterparty (an agent address; empty: our own data).
                An entry about a partner is reported to it with a signed head.
            content_hash: hex SHA-256 of the content, when known.
            grant: the grant that allowed the use (empty until grants exist).
            event: received, used, deleted or refused.

        Returns:
            The ``access`` entry on the hash chain.

        Raises:
            UsageError: an empty actor, data or purpose, or another field out of range.
            LedgerFull, LedgerError: nothing was recorded.
        """
        for name, value in (("actor", actor), ("data", data), ("purpose", purpose)):
            if not isinstance(value, str) or not value:
                raise UsageError(f"record_access: {name}: must be a non-empty str, got "
                                 f"{value!r}")
        if event not in get_args(EventKind):
            raise UsageError(f"record_access: event: must be one of "
                             f"{', '.join(get_args(EventKind))}, got {event!r}")
        now = self._now_ms()
        try:
            entry = AuditEntry(at_ms=now, agent=actor, owner=owner, dataset=data,
                               content_hash=content_hash, grant=grant, purpose=purpose,
                               event=event, agreement_id=agreement_id or "")
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise UsageError(f"record_access: {'.'.join(map(str, first['loc']))}: "
                             f"{first['msg']}") from None
        body = {"actor": actor, "data": data, "purpose": purpose,
                "agreement_id": agreement_id, "at_ms": now, "owner": owner, "event": event,
                "grant": grant, "content_hash": content_hash}

        def record(c: sqlite3.Connection) -> Entry:
            tree = self._tree(c)

            def write(c: sqlite3.Connection) -> Entry:
                appended = store.append(c, "access", body, agreement_id=agreement_id)
                audit_store.append_leaf(c, tree.size, entry)
                return appended
            appended = store.transaction(c, write)
            tree.append(entry.leaf_hash())  # only once the leaf is on disk
            return appended
        appended = await self._run(record)
        self.audit_appended.set()
        return appended

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

    # -- our own log ------------------------------------------------------------------------

    async def audit_size(self) -> int:
        """How many entries the audit log holds."""
        return await self._run(lambda c: self._tree(c).size)

    async def audit_root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root of the first `size` entries (default: all)."""
        return await self._run(lambda c: self._tree(c).root(size))

    async def audit_entries(self, *, after: int = 0, limit: int = 100,
                            owner: str | None = None) -> list[tuple[int, AuditEntry]]:
        """Up to `limit` entries from index `after` on, only `owner`'s if given."""
        return await self._run(lambda c: audit_store.entries(c, after, limit, owner))

    async def audit_head(self) -> SignedTreeHead:
        """The log's head now, signed by the ledger's owner (kept as the newest head).

        Its time never goes back: a clock stepped backwards signs at the previous head's.

        Raises:
            UsageError: the ledger was opened without the owner's key.
        """
        signer = self._audit_signer()
        return await self._run(lambda c: store.transaction(
            c, lambda c: self._sign_head(c, signer)))

    def _audit_signer(self) -> Identity:
        signer = self._signer()
        if signer is None:
            raise UsageError("audit heads are signed by the node's key; open the ledger with "
                             "LedgerConfig(owner=...)")
        return signer

    def _sign_head(self, c: sqlite3.Connection, signer: Identity) -> SignedTreeHead:
        tree, last = self._tree(c), audit_store.last_head(c)
        problem = _own_problem(tree, last)
        if problem is not None:  # kept: the next head would hide it
            audit_store.keep_problem(c, problem)
        at_ms = max(self._now_ms(), last.at_ms if last is not None else 0)
        if last is not None and last.size == tree.size and last.root == tree.root().hex():
            return last
        head = SignedTreeHead.create(signer, size=tree.size, root=tree.root(), at_ms=at_ms)
        audit_store.keep_head(c, head)
        return head

    async def audit_inclusion(self, index: int,
                              size: int | None = None) -> tuple[AuditEntry, list[bytes]]:
        """Entry `index` and its inclusion proof in the tree of `size` (default: all).

        Raises:
            UsageError: `index` or `size` is out of range.
        """
        def read(c: sqlite3.Connection) -> tuple[AuditEntry, list[bytes]]:
            proof = self._tree(c).inclusion_proof(index, size)
            [(_, entry)] = audit_store.entries(c, index, 1)
            return entry, proof
        return await self._run(read)

    async def audit_consistency(self, first: int, second: int | None = None) -> list[bytes]:
        """The consistency proof from size `first` to `second` (default: all).

        Raises:
            UsageError: not 0 < first <= second <= size.
        """
        return await self._run(lambda c: self._tree(c).consistency_proof(first, second))

    async def audit_verify_own(self) -> str | None:
        """Whether the log still extends every head this node signed; None if it does.

        Each head is checked against the one before when it is signed, and a failure is
        kept. Whoever rewrote the file can rewrite that too; partners hold heads of their
        own, which they check (`receive_audit_head`).
        """
        def read(c: sqlite3.Connection) -> str | None:
            return audit_store.problem(c) or _own_problem(self._tree(c),
                                                          audit_store.last_head(c))
        return await self._run(read)

    # -- reporting to partners --------------------------------------------------------------

    async def audit_pending(self, hosted: set[str]) -> list[tuple[str, int, int]]:
        """Every partner with entries about it not yet taken.

        Returns (partner, first entry it has not taken, size of the head it took); our
        `hosted` agents are no partners.
        """
        return await self._run(lambda c: audit_store.pending(c, hosted))

    async def audit_report(self, owner: str, after: int, limit: int, first: int | None
                           ) -> tuple[SignedTreeHead, list[ProvenLeaf], list[bytes]]:
        """What to send `owner`: a fresh signed head, its entries and proofs.

        Up to `limit` of `owner`'s entries from index `after` with their inclusion proofs,
        and the consistency proof from `first` (empty when `first` is None, 0, or not below
        the size).
        """
        signer = self._audit_signer()

        def read(c: sqlite3.Connection
                 ) -> tuple[SignedTreeHead, list[ProvenLeaf], list[bytes]]:
            head = store.transaction(c, lambda c: self._sign_head(c, signer))
            tree = self._tree(c)
            found = [(i, e, tree.inclusion_proof(i, head.size))
                     for i, e in audit_store.entries(c, after, limit, owner) if i < head.size]
            proof = (tree.consistency_proof(first, head.size)
                     if first is not None and 0 < first < head.size else [])
            return head, found, proof
        return await self._run(read)

    async def audit_reported(self, owner: str, next_index: int, acked_size: int) -> None:
        """Note that `owner` took every entry about it before `next_index`.

        It took them under a head of `acked_size` entries.
        """
        await self._write(lambda c: audit_store.reported(c, owner, next_index, acked_size))

    # -- partners' logs ---------------------------------------------------------------------

    async def receive_audit_head(self, head: SignedTreeHead, first: int | None,
                                 proof: Sequence[bytes], found: Sequence[ProvenLeaf], *,
                                 sender: str) -> tuple[HeadCheck, int]:
        """Judge a partner's signed `head` against the newest we accepted of its log.

        Returns the verdict and the size of the head we hold of that log now.

        `head`'s signature and `found`'s inclusion proofs must have been checked. Accepted
        (``first``, ``same``, ``extends``): it becomes the held head and `found` is kept.
        Caught: the held head stays, the log is marked, and the evidence is kept.

        Raises:
            LedgerError: a new partner log beyond `audit_store.MAX_PARTNER_LOGS`, or the
                ledger could not write; nothing was kept.
        """
        now = self._now_ms()

        def judge(c: sqlite3.Connection) -> tuple[HeadCheck, int]:
            kept = audit_store.partner(c, head.log)
            if kept is None and audit_store.partner_count(c) >= audit_store.MAX_PARTNER_LOGS:
                raise LedgerError(f"heads of {audit_store.MAX_PARTNER_LOGS} partner logs are "
                                  "kept already; a new one is not taken")
            verdict = check_head(kept.head if kept else None, head, first, proof)
            status = kept.status if kept is not None else "ok"
            if verdict.caught and kept is not None:  # (only a held head can be contradicted)
                audit_store.keep_evidence(c, AuditEvidence(
                    outcome=verdict.outcome, detail=verdict.detail, held=kept.head, new=head,
                    proof=tuple(p.hex() for p in proof), first=first, sender=sender,
                    at_ms=now))
                audit_store.keep_partner(c, PartnerLog(kept.head, verdict.outcome,
                                                       verdict.detail, now, sender))
            elif verdict.outcome != "need_proof":
                detail = kept.detail if kept is not None and status != "ok" else verdict.detail
                audit_store.keep_partner(c, PartnerLog(head, status, detail, now, sender))
                audit_store.keep_received(c, head.log, [(i, e) for i, e, _ in found],
                                          head.size)
                return verdict, head.size
            return verdict, kept.head.size if kept is not None else 0
        return await self._write(judge)

    async def audit_partners(self) -> list[PartnerLog]:
        """Every partner log we hold a head of, the caught ones first."""
        return await self._run(audit_store.partners)

    async def audit_evidence(self, log: str | None = None) -> list[AuditEvidence]:
        """Every contradiction kept (of `log` only, if given), oldest first."""
        return await self._run(lambda c: audit_store.evidence(c, log))

    async def audit_received(self, *, log: str | None = None,
                             limit: int = 100) -> list[tuple[str, int, AuditEntry, int]]:
        """The newest entries partners proved to us about our agents.

        Returns (partner log, index, entry, size of the head that proved it).
        """
        return await self._run(lambda c: audit_store.received(c, log, limit))


def _own_problem(tree: MerkleTree, last: SignedTreeHead | None) -> str | None:
    """Why the log no longer extends `last`, the newest head we signed; None if it does."""
    if last is None:
        return None
    if tree.size < last.size:
        return (f"the log holds {tree.size} entries, fewer than the {last.size} of a head "
                "this node signed: it was truncated")
    if tree.root(last.size).hex() != last.root:
        return (f"the first {last.size} entries no longer give the root this node signed "
                f"at {last.at_ms} ms: they were rewritten or reordered")
    return None
