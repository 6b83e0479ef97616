"""Whose ledger it is, and where each deposit stands, are part of the chain.

The owner's address and the file's id are hashed into the genesis that entry 1 follows, and
the owner signs each deposit and withdrawal over its place (seq, previous hash). So removing
or swapping the owner record, a deposit signed by another key, and a genuine deposit copied
a second time all fail `verify` (and `verify --against` a genuine checkpoint); the owner's
key, a node included, refuses to open such a file, and a file of an older format is refused
with its reason.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import Identity
from aaex_agents.clock import ManualClock
from marketplace.cli.main import main
from marketplace.contracts.chain import canonical_body, entry_hash, money_signing_bytes
from marketplace.contracts.errors import BadContractSignature, LedgerError, LedgerTampered
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from tests.market_kit import BUYER, OWNER, SELLER, STRANGER, agreement, receipt
from tests.node_kit import ROOT
from tests.test_ledger import FUNDS, _build, _verify
from tests.test_ledger_checkpoint import _checkpoint, _tamper, _verify_against


def _head(path: Path) -> tuple[int, bytes]:
    with sqlite3.connect(path) as db:
        seq, digest = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC").fetchone()
    return int(seq), bytes(digest)


def _append(path: Path, kind: str, body: bytes, *extra: str) -> int:
    """Append an entry with a correct hash and move the head to it, as a forger would."""
    seq, prev = _head(path)
    digest = entry_hash(prev, seq + 1, kind, body)
    _tamper(path, f"INSERT INTO entries (seq, kind, body, prev_hash, hash) VALUES "  # noqa: S608
                  f"({seq + 1}, '{kind}', x'{body.hex()}', x'{prev.hex()}', x'{digest.hex()}')",
            f"UPDATE meta SET value = {seq + 1} WHERE key = 'head_seq'",  # noqa: S608
            f"UPDATE meta SET value = x'{digest.hex()}' WHERE key = 'head_hash'",  # noqa: S608
            *extra)
    return seq + 1


def _forged_deposit(path: Path, signer: Identity, to: str, micro: int) -> int:
    """A deposit signed by `signer` at the next place, credited in the balance table too."""
    seq, prev = _head(path)
    body: dict[str, Any] = {"address": to, "amount": micro, "at_ms": 1, "currency": "credit",
                            "memo": "", "signer": signer.address}
    body["signature"] = signer.sign(money_signing_bytes(body, seq=seq + 1,
                                                        prev_hash=prev)).hex()
    return _append(path, "deposit", canonical_body(body),
                   "INSERT OR IGNORE INTO balances VALUES "  # noqa: S608
                   f"('{to}', 'credit', 0, 0)",
                   f"UPDATE balances SET available = available + {micro} "  # noqa: S608
                   f"WHERE address = '{to}'")


def _copy_entry(path: Path, seq: int) -> int:
    """Append entry `seq` (a genuine signed deposit) again, credited again."""
    with sqlite3.connect(path) as db:
        raw = bytes(db.execute("SELECT body FROM entries WHERE seq = ?", (seq,)).fetchone()[0])
    body = json.loads(raw)
    return _append(path, "deposit", raw,
                   f"UPDATE balances SET available = available + {body['amount']} "  # noqa: S608
                   f"WHERE address = '{body['address']}'")


async def _sales_books(path: Path) -> None:
    """A seller's books: agreements and receipts, and no money entry at all."""
    async with open_ledger(path, config=LedgerConfig(clock=ManualClock(),
                                                     owner=OWNER)) as ledger:
        for n in (1, 2):
            signed = agreement(n=n)
            await ledger.record_agreement(signed, role="seller")
            await ledger.settle(receipt(signed, BUYER))


# -- the owner is bound into the chain -----------------------------------------------------


@pytest.mark.parametrize("change", ["DELETE FROM meta WHERE key = 'owner'",
                                    f"UPDATE meta SET value = '{STRANGER.address}' "  # noqa: S608
                                    "WHERE key = 'owner'",
                                    "DELETE FROM meta WHERE key = 'ledger_id'"],
                         ids=["owner removed", "owner swapped", "ledger id removed"])
async def test_removing_or_swapping_the_owner_breaks_the_chain_at_entry_1(
        tmp_path: Path, change: str) -> None:
    """Even books without a single signed money entry: the genesis carries the owner."""
    path = tmp_path / "seller.db"
    await _sales_books(path)
    checkpoint = await _checkpoint(path)
    await _verify(path)
    _tamper(path, change)
    with pytest.raises(LedgerTampered, match="genesis") as caught:
        await _verify(path)
    assert caught.value.seq == 1
    # Swapped: the genuine checkpoint is of another owner's ledger than the file claims.
    with pytest.raises((LedgerTampered, BadContractSignature)):
        await _verify_against(path, checkpoint)


async def test_a_checkpoint_of_the_empty_ledger_pins_its_genesis(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)):
        pass
    checkpoint = await _checkpoint(path)
    await _verify_against(path, checkpoint)
    _tamper(path, "UPDATE meta SET value = 'another id' WHERE key = 'ledger_id'")
    with pytest.raises(LedgerTampered, match="genesis published earlier") as caught:
        await _verify_against(path, checkpoint)
    assert caught.value.seq == 1


async def test_a_deposit_by_any_key_fails_once_the_owner_record_is_gone(
        tmp_path: Path) -> None:
    """Attack 11: delete the owner row, then credit yourself with a deposit signed by you."""
    path = tmp_path / "ledger.db"
    await _build(path)
    checkpoint = await _checkpoint(path)
    _tamper(path, "DELETE FROM meta WHERE key = 'owner'")
    _forged_deposit(path, STRANGER, STRANGER.address, 1_000_000)
    for check in (_verify(path), _verify_against(path, checkpoint)):
        with pytest.raises(LedgerTampered, match="genesis") as caught:
            await check
        assert caught.value.seq == 1


async def test_a_ledger_without_an_owner_holds_no_money(tmp_path: Path) -> None:
    """Books kept without a key (a seller's, opened to settle only) take no deposit at all."""
    path = tmp_path / "unowned.db"
    async with open_ledger(path) as ledger:
        await ledger.record_agreement(agreement(), role="seller")
    seq = _forged_deposit(path, STRANGER, STRANGER.address, 1_000_000)
    with pytest.raises(LedgerTampered, match="records no owner") as caught:
        await _verify(path)
    assert caught.value.seq == seq


# -- a deposit is signed at its place --------------------------------------------------------


async def test_a_genuine_deposit_copied_a_second_time_fails(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    checkpoint = await _checkpoint(path)
    seq = _copy_entry(path, 1)  # FUNDS to the buyer, once more
    for check in (_verify(path), _verify_against(path, checkpoint)):
        with pytest.raises(LedgerTampered, match="copied from another place") as caught:
            await check
        assert caught.value.seq == seq


async def test_a_deposit_copied_from_another_ledger_of_the_same_owner_fails(
        tmp_path: Path) -> None:
    """Two empty ledgers of one owner still differ in their genesis: their ids differ."""
    first, second = tmp_path / "first.db", tmp_path / "second.db"
    async with open_ledger(first, config=LedgerConfig(owner=OWNER)) as ledger:
        await ledger.deposit(BUYER.address, FUNDS)
    async with open_ledger(second, config=LedgerConfig(owner=OWNER)) as ledger:
        await ledger.record_access(SELLER.address, "sales", "forecast")
    with sqlite3.connect(first) as db:
        raw = bytes(db.execute("SELECT body FROM entries WHERE seq = 1").fetchone()[0])
    with sqlite3.connect(second) as db:
        genesis = bytes(db.execute("SELECT prev_hash FROM entries WHERE seq = 1").fetchone()[0])
    # Put the first ledger's entry 1 in place of the second's, with a correct hash.
    digest = entry_hash(genesis, 1, "deposit", raw)
    _tamper(second, "DELETE FROM entries",
            f"INSERT INTO entries (seq, kind, body, prev_hash, hash) VALUES "  # noqa: S608
            f"(1, 'deposit', x'{raw.hex()}', x'{genesis.hex()}', x'{digest.hex()}')",
            f"UPDATE meta SET value = x'{digest.hex()}' WHERE key = 'head_hash'",  # noqa: S608
            f"INSERT INTO balances VALUES ('{BUYER.address}', 'credit', {FUNDS.micro}, 0)")  # noqa: S608
    with pytest.raises(LedgerTampered, match="copied from another place") as caught:
        await _verify(second)
    assert caught.value.seq == 1


# -- the owner's key refuses a tampered file --------------------------------------------------


async def test_the_owner_never_opens_a_tampered_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    seq = _copy_entry(path, 1)
    with pytest.raises(LedgerTampered, match="does not write on a tampered ledger") as caught:
        async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
            await ledger.withdraw(BUYER.address, FUNDS + FUNDS)  # the forged credit
    assert caught.value.seq == seq


async def test_the_owner_does_not_take_over_books_that_lost_their_owner(
        tmp_path: Path) -> None:
    path = tmp_path / "seller.db"
    await _sales_books(path)
    _tamper(path, "DELETE FROM meta WHERE key = 'owner'")
    with pytest.raises(LedgerError, match="records no owner"):
        async with open_ledger(path, config=LedgerConfig(owner=OWNER)):
            pass
    with sqlite3.connect(path) as db:  # and it wrote nothing back
        assert db.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone() is None


async def test_an_older_format_is_refused_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await _build(path)
    _tamper(path, "UPDATE meta SET value = 'aaex-ledger/2' WHERE key = 'format'")
    for config in (LedgerConfig(owner=OWNER), LedgerConfig(read_only=True)):
        with pytest.raises(LedgerError, match=r"older format aaex-ledger/2.*move the file aside"):
            async with open_ledger(path, config=config):
                pass


# -- the CLI and a real node on a tampered file ------------------------------------------------


def _owner_removed_and_stranger_paid(path: Path) -> tuple[int, str, str]:
    _tamper(path, "DELETE FROM meta WHERE key = 'owner'")
    _forged_deposit(path, STRANGER, STRANGER.address, 50_000_000)
    return 1, "genesis", "holds entries but records no owner"


def _deposit_copied(path: Path) -> tuple[int, str, str]:
    seq = _copy_entry(path, 2)
    return seq, "copied from another place", f"ledger entry {seq}: deposit"


TAMPERED_FILES = {"owner removed, a stranger's deposit": _owner_removed_and_stranger_paid,
                  "a genuine deposit copied": _deposit_copied}


@pytest.mark.parametrize("case", TAMPERED_FILES, ids=list(TAMPERED_FILES))
def test_cli_verify_fails_and_a_node_refuses_to_start_on_a_tampered_ledger(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    node_key = Identity.generate()
    node_key.save(tmp_path / "node.key")
    toml = tmp_path / "node.toml"
    toml.write_text('[node]\nidentity = "node.key"\ndata_dir = "data"\nhttp = "127.0.0.1:0"\n'
                    'admin = "127.0.0.1:0"\np2p = []\n\n[[agents]]\nname = "buyer"\n'
                    'class = "tests.peers.market_agents:StandingBuyer"\n'
                    "settings = { orders = 0, budget = 1.0, deadline = 5.0 }\n")
    for amount in ("5", "7"):  # offline: `aaex account deposit` writes the file
        assert main(["account", "deposit", "--config", str(toml), "buyer", amount]) == 0
    out = tmp_path / "checkpoint.json"
    assert main(["ledger", "checkpoint", "--config", str(toml), "--out", str(out)]) == 0
    path = tmp_path / "data" / "ledger.sqlite"
    assert main(["ledger", "verify", str(path), "--against", str(out)]) == 0
    capsys.readouterr()

    # (first bad entry, what verify says, what the node and the CLI's owner key say)
    seq, problem, refusal = TAMPERED_FILES[case](path)
    for against in ([], ["--against", str(out)]):
        assert main(["ledger", "verify", str(path), *against]) == 1
        err = capsys.readouterr().err
        assert f"TAMPERED at entry {seq}" in err and problem in err

    # Blocking on purpose (a plain subprocess, no event loop): pytest's timeout bounds it.
    node = subprocess.Popen([sys.executable, "-m", "marketplace.cli", "node", "run",
                             "--config", str(toml)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert node.stdout is not None
    try:  # the first line is either the node's "ready" or nothing (it exited)
        ready = node.stdout.readline()
    finally:
        if node.poll() is None:
            node.terminate()
        _, stderr = node.communicate(timeout=60)
    code = node.returncode
    assert ready == b"" and code == 2, f"the node did not refuse (exit {code}): {stderr[-800:]!r}"
    lines = [line for line in stderr.decode().splitlines() if line.startswith("aaex: ")]
    assert len(lines) == 1, stderr.decode()
    assert refusal in lines[0]
    # Nor does the CLI pay anything out of it (the node is down: it writes the file itself).
    assert main(["account", "withdraw", "--config", str(toml), "buyer", "1"]) == 2
    assert refusal in capsys.readouterr().err
