"""Signed checkpoints catch the forgeries the chain alone cannot; audits never write.

The three consistent forgeries of a ledger file (its newest entries cut, an entry replaced by
one with a correct hash, every hash re-computed after an edit) pass `verify` on their own and
fail against a checkpoint that left the node before. The CLI audits read-only, and a new
ledger is private to its owner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from aaex_agents import Credits, Identity
from aaex_agents.clock import ManualClock
from marketplace.cli.main import main
from marketplace.contracts.chain import entry_hash
from marketplace.contracts.checkpoint import Checkpoint
from marketplace.contracts.errors import (
    BadContractSignature,
    LedgerError,
    LedgerTampered,
    MalformedContract,
)
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from tests.market_kit import BUYER, OWNER, STRANGER
from tests.test_ledger import _build, _verify


def _tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER IF EXISTS entries_no_update")
        db.execute("DROP TRIGGER IF EXISTS entries_no_delete")
        for statement in statements:
            db.execute(statement)


async def _checkpoint(path: Path) -> Checkpoint:
    async with open_ledger(path, config=LedgerConfig(owner=OWNER, clock=ManualClock())) as ledger:
        return await ledger.checkpoint()


async def _verify_against(path: Path, checkpoint: Checkpoint) -> None:
    async with open_ledger(path, config=LedgerConfig(read_only=True)) as ledger:
        await ledger.verify(against=checkpoint)


def _cut_newest(path: Path) -> None:
    """Drop entry 10 (a deposit of 100 to the buyer) and make the rest agree: consistent."""
    with sqlite3.connect(path) as db:
        prev = db.execute("SELECT hash FROM entries WHERE seq = 9").fetchone()[0]
    _tamper(path, "DELETE FROM entries WHERE seq = 10",
            "UPDATE meta SET value = 9 WHERE key = 'head_seq'",
            f"UPDATE meta SET value = x'{prev.hex()}' WHERE key = 'head_hash'",  # noqa: S608
            f"UPDATE balances SET available = available - 100 "  # noqa: S608
            f"WHERE address = '{BUYER.address}'")


def _replace_newest(path: Path) -> None:
    """Cut entry 10 and append an audit event in its place, with a correct hash."""
    _cut_newest(path)
    with sqlite3.connect(path) as db:
        prev = db.execute("SELECT hash FROM entries WHERE seq = 9").fetchone()[0]
    body = (b'{"actor":"' + STRANGER.address.encode() + b'","agreement_id":null,"at_ms":1,'
            b'"data":"sales","purpose":"forged"}')
    digest = entry_hash(prev, 10, "access", body)
    _tamper(path, f"INSERT INTO entries (seq, kind, body, prev_hash, hash) VALUES "  # noqa: S608
                  f"(10, 'access', x'{body.hex()}', x'{prev.hex()}', x'{digest.hex()}')",
            "UPDATE meta SET value = 10 WHERE key = 'head_seq'",
            f"UPDATE meta SET value = x'{digest.hex()}' WHERE key = 'head_hash'")  # noqa: S608


def _rechain(path: Path) -> None:
    """Edit the audit event at entry 8 and re-hash it, every entry after it and the head."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, kind, body FROM entries ORDER BY seq").fetchall()
        genesis = db.execute("SELECT prev_hash FROM entries WHERE seq = 1").fetchone()[0]
    prev, statements = genesis, []
    for seq, kind, body in rows:
        if seq == 8:
            body = body.replace(b"forecast", b"marketing")
        digest = entry_hash(prev, seq, kind, body)
        statements.append(f"UPDATE entries SET body = x'{body.hex()}', "  # noqa: S608
                          f"prev_hash = x'{prev.hex()}', hash = x'{digest.hex()}' "
                          f"WHERE seq = {seq}")
        prev = digest
    statements.append(f"UPDATE meta SET value = x'{prev.hex()}' "  # noqa: S608
                      "WHERE key = 'head_hash'")
    _tamper(path, *statements)


# (forge, first bad seq, the checkpoint's finding, what `verify` alone finds: None if nothing)
FORGERIES = {
    "newest entries cut": (_cut_newest, 10, "cut", None),
    "newest entry replaced, hash correct": (_replace_newest, 10, "rewritten", None),
    # Re-chaining moves the deposit at entry 10 off the place its signature covers.
    "everything re-chained": (_rechain, 10, "rewritten", "copied from another place"),
}


@pytest.mark.parametrize("case", FORGERIES, ids=list(FORGERIES))
async def test_a_consistent_forgery_passes_verify_but_not_a_checkpoint(
        tmp_path: Path, case: str) -> None:
    forge, seq, problem, alone = FORGERIES[case]
    path = tmp_path / "ledger.db"
    await _build(path)
    checkpoint = await _checkpoint(path)
    await _verify_against(path, checkpoint)
    forge(path)
    if alone is None:
        await _verify(path)  # consistent: the chain alone cannot tell
    else:
        with pytest.raises(LedgerTampered, match=alone):
            await _verify(path)
    with pytest.raises(LedgerTampered, match=problem) as caught:
        await _verify_against(path, checkpoint)
    assert caught.value.seq == seq


async def test_history_may_grow_after_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    checkpoint = await _checkpoint(path)
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
        await ledger.deposit(STRANGER.address, Credits(1))
        report = await ledger.verify(against=checkpoint)
    assert report.entries == checkpoint.entries + 1


async def test_a_forged_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    real = await _checkpoint(path)
    moved = real.model_copy(update={"seq": 9})  # edited, signature kept
    stranger = Checkpoint.create(STRANGER, seq=real.seq, hash=real.hash, entries=real.entries,
                                 at_ms=real.at_ms)  # another node's key
    impostor = stranger.model_copy(update={"ledger": OWNER.address})
    for forged, problem in ((moved, "not signed"), (stranger, "not of this ledger's owner"),
                            (impostor, "not signed")):
        with pytest.raises(BadContractSignature, match=problem):
            await _verify_against(path, forged)
    with pytest.raises(MalformedContract, match="not a checkpoint"):
        Checkpoint.from_json(real.to_json().replace('"seq"', '"sequence"'))
    assert Checkpoint.from_json(real.to_json()) == real


async def test_a_checkpoint_needs_the_owners_key(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "l.db") as ledger:
        with pytest.raises(Exception, match="without the node's key"):
            await ledger.checkpoint()


# -- auditing never writes; the file is private ------------------------------------------------


def test_verify_and_show_of_a_missing_file_fail_and_create_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "ledger.sqlite"
    for command in ("verify", "show"):
        assert main(["ledger", command, str(missing)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "no ledger at" in err
    assert list(tmp_path.iterdir()) == []


def test_verify_never_writes_into_the_file_it_audits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = foreign.read_bytes()
    assert main(["ledger", "verify", str(foreign)]) == 2
    assert "not an AAEX ledger" in capsys.readouterr().err
    with sqlite3.connect(foreign) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"notes"}
    assert foreign.read_bytes() == before


async def test_a_read_only_ledger_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    async with open_ledger(path, config=LedgerConfig(owner=OWNER, read_only=True)) as ledger:
        with pytest.raises(LedgerError, match="readonly"):
            await ledger.deposit(BUYER.address, Credits(1))
        await ledger.verify()


async def test_a_new_ledger_is_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / "data" / "ledger.sqlite"
        async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
            await ledger.deposit(BUYER.address, Credits(1))
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"ledger.sqlite": 0o600, "ledger.sqlite-wal": 0o600,
                     "ledger.sqlite-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


# -- the CLI: aaex ledger checkpoint, aaex ledger verify --against -----------------------------


def test_cli_checkpoint_then_verify_against_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    node = Identity.generate()
    node.save(tmp_path / "node.key")
    (tmp_path / "node.toml").write_text('[node]\nidentity = "node.key"\ndata_dir = "data"\n')
    path = tmp_path / "data" / "ledger.sqlite"

    async def fund(amount: int) -> None:
        async with open_ledger(path, config=LedgerConfig(owner=node)) as ledger:
            await ledger.deposit(BUYER.address, Credits(amount))

    asyncio.run(fund(5))
    asyncio.run(fund(7))
    out = tmp_path / "checkpoint.json"
    assert main(["ledger", "checkpoint", "--config", str(tmp_path / "node.toml"),
                 "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    written = Checkpoint.load(out)
    assert (written.seq, written.entries, written.ledger) == (2, 2, node.address)
    assert main(["ledger", "verify", str(path), "--against", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint"] == 2

    document = json.loads(out.read_text())
    document["seq"] = 1
    (forged := tmp_path / "forged.json").write_text(json.dumps(document))
    assert main(["ledger", "verify", str(path), "--against", str(forged)]) == 1
    assert "checkpoint FORGED" in capsys.readouterr().err

    with sqlite3.connect(path) as db:
        prev = db.execute("SELECT hash FROM entries WHERE seq = 1").fetchone()[0]
    _tamper(path, "DELETE FROM entries WHERE seq = 2",
            "UPDATE meta SET value = 1 WHERE key = 'head_seq'",
            f"UPDATE meta SET value = x'{prev.hex()}' WHERE key = 'head_hash'",  # noqa: S608
            "UPDATE balances SET available = available - 7")
    assert main(["ledger", "verify", str(path)]) == 0  # a clean cut: consistent
    capsys.readouterr()
    assert main(["ledger", "verify", str(path), "--against", str(out)]) == 1
    assert "TAMPERED at entry 2" in capsys.readouterr().err
