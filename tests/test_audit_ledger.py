"""The audit log on real SQLite ledgers: every access a leaf, heads signed, partners judge.

Two ledgers stand for two nodes: the user's, which records the uses of a partner's data and
reports heads (`audit_report`), and the partner's, which judges them
(`receive_audit_head`). The user's file is then rewritten, truncated or reordered on disk
behind its back, reopened, and its next head is caught.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from aaex_agents import UsageError
from aaex_agents.clock import Clock, ManualClock
from marketplace.contracts import audit_store
from marketplace.contracts.audit_log import AuditEntry, HeadCheck, SignedTreeHead
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.merkle import MerkleTree, verify_consistency, verify_inclusion
from tests.market_kit import BUYER, OWNER, SELLER, STRANGER


async def test_every_access_is_a_leaf_and_the_signed_head_proves_it(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "l.db", config=LedgerConfig(
            clock=ManualClock(), owner=OWNER)) as ledger:
        await ledger.record_access(SELLER.address, "sales/q3.parquet", "forecast",
                                   owner=BUYER.address, content_hash="ab" * 32,
                                   event="received")
        await ledger.record_access(SELLER.address, "sales/q3.parquet", "forecast")
        assert [e.data for e in await ledger.access_events()] == ["sales/q3.parquet"] * 2
        entries = await ledger.audit_entries()
        assert [(i, e.owner, e.event) for i, e in entries] == [
            (0, BUYER.address, "received"), (1, "", "used")]
        head = await ledger.audit_head()
        head.verify(OWNER.address)
        tree = MerkleTree(e.leaf_hash() for _, e in entries)
        assert (head.size, head.root) == (2, tree.root().hex())
        entry, proof = await ledger.audit_inclusion(0)
        verify_inclusion(0, 2, entry.leaf_hash(), proof, head.root_bytes)
        await ledger.record_access(SELLER.address, "routes.json", "planning", event="deleted")
        later = await ledger.audit_head()
        verify_consistency(2, 3, head.root_bytes, later.root_bytes,
                           await ledger.audit_consistency(2))
        assert later.at_ms >= head.at_ms and await ledger.audit_verify_own() is None
        with pytest.raises(UsageError, match="event"):
            await ledger.record_access(SELLER.address, "x", "y", event="stolen")  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="content_hash"):
            await ledger.record_access(SELLER.address, "x", "y", content_hash="nothex")
        await ledger.verify()
    async with open_ledger(tmp_path / "l.db", config=LedgerConfig(owner=OWNER)) as reopened:
        assert await reopened.audit_root() == later.root_bytes  # read back from the file


async def report(user: Ledger, partner: Ledger, first: int | None) -> HeadCheck:
    """One exchange: the user's head and entries about BUYER, judged by the partner."""
    head, found, proof = await user.audit_report(BUYER.address, 0, 100, first)
    for index, entry, path in found:
        verify_inclusion(index, head.size, entry.leaf_hash(), path, head.root_bytes)
    head.verify()
    verdict, have = await partner.receive_audit_head(head, first, proof, found,
                                                     sender=SELLER.address)
    assert have == (head.size if not verdict.caught and verdict.outcome != "need_proof"
                    else (await partner.audit_partners())[0].head.size)
    return verdict


def _tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER audit_leaves_no_update")
        db.execute("DROP TRIGGER audit_leaves_no_delete")
        for statement in statements:
            db.execute(statement)


def _rewrite(path: Path) -> None:
    forged = AuditEntry(at_ms=1, agent=SELLER.address, owner=BUYER.address,
                        dataset="sales/q3.parquet", purpose="nothing to see").leaf()
    _tamper(path, f"UPDATE audit_leaves SET leaf = x'{forged.hex()}' WHERE idx = 1")  # noqa: S608


def _truncate(path: Path) -> None:
    _tamper(path, "DELETE FROM audit_leaves WHERE idx >= 2")


def _reorder(path: Path) -> None:
    with sqlite3.connect(path) as db:
        zero, one = (bytes(db.execute("SELECT leaf FROM audit_leaves WHERE idx = ?",
                                      (i,)).fetchone()[0]) for i in (0, 1))
    _tamper(path, f"UPDATE audit_leaves SET leaf = x'{one.hex()}' WHERE idx = 0",  # noqa: S608
            f"UPDATE audit_leaves SET leaf = x'{zero.hex()}' WHERE idx = 1")  # noqa: S608


@pytest.mark.parametrize(("tamper", "outcome"), [
    (_rewrite, "inconsistent"), (_truncate, "shrunk"), (_reorder, "inconsistent")])
async def test_a_log_changed_on_disk_is_caught_by_the_partner(tmp_path: Path, tamper: object,
                                                              outcome: str) -> None:
    clock = ManualClock()
    user_path = tmp_path / "user.db"
    async with open_ledger(tmp_path / "partner.db", config=LedgerConfig(
            clock=clock, owner=STRANGER)) as partner:
        async with open_ledger(user_path, config=LedgerConfig(clock=clock,
                                                              owner=OWNER)) as user:
            for n in range(3):
                await user.record_access(SELLER.address, "sales/q3.parquet", f"use {n}",
                                         owner=BUYER.address)
            assert (await report(user, partner, None)).outcome == "first"
            await user.record_access(SELLER.address, "sales/q4.parquet", "forecast",
                                     owner=BUYER.address)
            clock.advance(1)
            assert (await report(user, partner, 1)).outcome == "need_proof"
            assert (await report(user, partner, 3)).outcome == "extends"
            [kept] = await partner.audit_partners()
            assert (kept.status, kept.head.size) == ("ok", 4)
            assert len(await partner.audit_received()) == 4
        assert callable(tamper)
        tamper(user_path)
        async with open_ledger(user_path, config=LedgerConfig(clock=clock,
                                                              owner=OWNER)) as user:
            assert await user.audit_verify_own() is not None  # its own last head disagrees
            await user.record_access(SELLER.address, "sales/q4.parquet", "again",
                                     owner=BUYER.address)
            clock.advance(1)
            found = await report(user, partner, 4)
        assert found.outcome == outcome, found
        [kept] = await partner.audit_partners()
        assert (kept.status, kept.head.size) == (outcome, 4)  # the good head stays held
        [evidence] = await partner.audit_evidence()
        assert evidence.recheck().outcome == outcome
        assert evidence.held.log == OWNER.address and evidence.sender == SELLER.address


class SteppedClock(Clock):
    """A clock the test sets, backwards too (an NTP step): the fault this test injects."""

    def __init__(self) -> None:
        self.at = 1_750_000_000.0

    def now(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


async def test_heads_never_go_back_in_time_and_a_backdated_head_is_caught() -> None:
    clock = SteppedClock()
    async with open_ledger(None, config=LedgerConfig(clock=clock, owner=OWNER)) as user, \
            open_ledger(None, config=LedgerConfig(clock=clock, owner=STRANGER)) as partner:
        await user.record_access(SELLER.address, "sales", "forecast", owner=BUYER.address)
        assert (await report(user, partner, None)).outcome == "first"
        held = await user.audit_head()
        clock.at -= 3600  # the clock is stepped an hour back
        await user.record_access(SELLER.address, "sales", "again", owner=BUYER.address)
        later = await user.audit_head()
        assert later.at_ms == held.at_ms  # not before the head the partner holds
        assert (await report(user, partner, 1)).outcome == "extends"
        # A head signed earlier than the held one is caught, whatever its proof.
        backdated = SignedTreeHead.create(OWNER, size=3, root=later.root_bytes,
                                          at_ms=later.at_ms - 1)
        verdict, have = await partner.receive_audit_head(backdated, 2, [], [],
                                                         sender=SELLER.address)
        assert (verdict.outcome, have) == ("backdated", 2)
        [evidence] = await partner.audit_evidence()
        assert evidence.recheck().outcome == "backdated"


async def test_received_entries_are_bounded_per_log_and_in_all(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_store, "RECEIVED_PER_LOG", 3)
    monkeypatch.setattr(audit_store, "RECEIVED_TOTAL", 5)
    async with open_ledger(None, config=LedgerConfig(owner=STRANGER)) as partner:
        for log in (OWNER, BUYER):
            async with open_ledger(None, config=LedgerConfig(owner=log)) as user:
                for n in range(4):
                    await user.record_access(SELLER.address, f"{log.address[:8]}/{n}", "x",
                                             owner=BUYER.address)
                assert (await report(user, partner, None)).outcome == "first"
        kept = await partner.audit_received()
        assert len(kept) == 5  # 3 of the second log, the newest 2 of the first
        assert sorted((log == OWNER.address, index) for log, index, _, _ in kept) == [
            (False, 1), (False, 2), (False, 3), (True, 2), (True, 3)]
        assert len(await partner.audit_partners()) == 2  # every head is kept
