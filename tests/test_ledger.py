"""The ledger on real SQLite files: escrow, settlement once, audit events, tamper evidence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents import Credits, UsageError
from aaex_agents.clock import ManualClock
from aaex_agents.money import ZERO
from marketplace.contracts.books import differences
from marketplace.contracts.chain import entry_hash
from marketplace.contracts.errors import (
    AlreadySettled,
    BadContractSignature,
    InsufficientFunds,
    LedgerCorrupt,
    LedgerError,
    LedgerFull,
    LedgerTampered,
    ReceiptMismatch,
    UnknownAgreement,
)
from marketplace.contracts.ledger import Balance, Ledger, LedgerConfig, open_ledger
from marketplace.contracts.receipt import SignedReceipt
from tests.market_kit import (
    BUYER,
    OWNER,
    PENALTY,
    PRICE,
    SELLER,
    STRANGER,
    agreement,
    receipt,
)

FUNDS = Credits(20_000)
BOND_FUNDS = Credits(5_000)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path / "ledger.db",
                           config=LedgerConfig(clock=ManualClock(), owner=OWNER)) as opened:
        await opened.deposit(BUYER.address, FUNDS)
        await opened.deposit(SELLER.address, BOND_FUNDS)
        yield opened


async def test_met_receipt_releases_the_price(ledger: Ledger) -> None:
    signed = agreement()
    await ledger.record_agreement(signed)
    assert await ledger.balance(BUYER.address) == Balance(FUNDS - PRICE, PRICE)
    assert await ledger.balance(SELLER.address) == Balance(BOND_FUNDS, ZERO)  # no bond held here
    settlement = await ledger.settle(receipt(signed, BUYER, latency_ms=200))
    assert (settlement.verdict, settlement.to_seller, settlement.to_buyer) == ("met", PRICE, ZERO)
    assert await ledger.balance(BUYER.address) == Balance(FUNDS - PRICE, ZERO)
    assert await ledger.balance(SELLER.address) == Balance(BOND_FUNDS + PRICE, ZERO)
    report = await ledger.verify()
    assert (report.entries, report.agreements, report.settled) == (5, 1, 1)


@pytest.mark.parametrize("latency", [5_000, None], ids=["breached", "not_delivered"])
async def test_breach_or_no_delivery_refunds_the_buyer_and_the_seller_owes_the_penalty(
        ledger: Ledger, latency: int | None) -> None:
    signed = agreement(max_latency_ms=1_000)
    await ledger.record_agreement(signed)
    settlement = await ledger.settle(receipt(signed, BUYER, latency_ms=latency))
    assert settlement.verdict == ("breached" if latency else "not_delivered")
    assert (settlement.to_seller, settlement.to_buyer) == (ZERO, PRICE)
    assert await ledger.balance(BUYER.address) == Balance(FUNDS, ZERO)
    assert await ledger.balance(SELLER.address) == Balance(BOND_FUNDS, ZERO)
    positions = await ledger.positions()
    assert (positions[SELLER.address].payable, positions[BUYER.address].receivable) == (
        PENALTY, PENALTY)
    entries = await ledger.entries()
    assert [e.kind for e in entries] == ["deposit", "deposit", "agreement", "hold", "refund"]
    await ledger.verify()


async def test_the_same_receipt_twice_pays_once(ledger: Ledger) -> None:
    signed = agreement()
    await ledger.record_agreement(signed)
    signed_receipt = receipt(signed, BUYER)
    first = await ledger.settle(signed_receipt)
    again = await ledger.settle(SignedReceipt.from_wire(signed_receipt.to_wire()))
    assert not first.duplicate and again.duplicate and again.seq == first.seq
    assert await ledger.settlement(signed.id) == first
    assert await ledger.balance(SELLER.address) == Balance(BOND_FUNDS + PRICE, ZERO)
    late = receipt(signed, BUYER, latency_ms=None)  # the buyer changes its story afterwards
    with pytest.raises(AlreadySettled, match="pays nothing"):
        await ledger.settle(late)
    assert await ledger.balance(SELLER.address) == Balance(BOND_FUNDS + PRICE, ZERO)
    assert (await ledger.verify()).settled == 1


async def test_the_database_itself_refuses_a_second_payout(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
        await ledger.deposit(BUYER.address, FUNDS)
        await ledger.deposit(SELLER.address, BOND_FUNDS)
        signed = agreement()
        await ledger.record_agreement(signed)
        await ledger.settle(receipt(signed, BUYER))
    with sqlite3.connect(path) as db:  # bypass the Python check entirely
        for column in ("settled", "receipt_id", "recorded"):
            value = db.execute(f"SELECT {column} FROM entries WHERE {column} NOT NULL"  # noqa: S608
                               ).fetchone()[0]
            with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
                db.execute(f"INSERT INTO entries (seq, kind, body, prev_hash, hash, {column}) "  # noqa: S608
                           "VALUES (99, 'release', x'', x'', x'', ?)", (value,))


async def test_recording_an_agreement_twice_holds_once(ledger: Ledger) -> None:
    signed = agreement()
    first = await ledger.record_agreement(signed)
    assert (await ledger.record_agreement(signed)).seq == first.seq
    assert await ledger.balance(BUYER.address) == Balance(FUNDS - PRICE, PRICE)
    assert [a.id for a in await ledger.agreements(unsettled=True)] == [signed.id]
    assert await ledger.agreement(signed.id) == signed


async def test_a_hold_beyond_the_available_balance_is_refused(ledger: Ledger) -> None:
    head = await ledger.head()
    with pytest.raises(InsufficientFunds, match="available") as caught:
        await ledger.record_agreement(agreement(price=FUNDS + Credits(1)))
    assert (caught.value.needed, caught.value.available) == (FUNDS + Credits(1), FUNDS)
    await ledger.record_agreement(agreement(n=3, penalty=BOND_FUNDS + Credits(1)), role="seller")
    await ledger.record_agreement(agreement(n=1, price=FUNDS))  # exactly enough is enough
    with pytest.raises(InsufficientFunds):  # held funds are not available twice
        await ledger.record_agreement(agreement(n=2, price=1))
    assert (await ledger.head())[0] == head[0] + 3  # a sale holds nothing: one entry
    assert len(await ledger.agreements()) == 2
    await ledger.verify()


async def test_settlement_refuses_what_does_not_verify(ledger: Ledger) -> None:
    signed = agreement()
    with pytest.raises(UnknownAgreement):
        await ledger.settle(receipt(signed, BUYER))
    await ledger.record_agreement(signed)
    forged = receipt(signed, BUYER).model_copy(
        update={"buyer_signature": STRANGER.sign(receipt(signed, BUYER).receipt.signing_bytes())})
    with pytest.raises(BadContractSignature):
        await ledger.settle(forged)
    lying = receipt(signed, BUYER, latency_ms=200).receipt.model_copy(
        update={"penalty": Credits(1)})
    with pytest.raises(ReceiptMismatch):
        await ledger.settle(SignedReceipt.create(lying, BUYER))
    assert await ledger.settlement(signed.id) is None
    assert await ledger.balance(BUYER.address) == Balance(FUNDS - PRICE, PRICE)


async def test_data_access_is_audited(ledger: Ledger) -> None:
    signed = agreement()
    await ledger.record_agreement(signed)
    await ledger.record_access(SELLER.address, "sales/2025-q3.parquet", "demand forecast",
                               agreement_id=signed.id)
    await ledger.record_access(BUYER.address, "routes/eu.json", "route planning")
    events = await ledger.access_events(actor=SELLER.address)
    assert [(e.data, e.purpose, e.agreement_id) for e in events] == [
        ("sales/2025-q3.parquet", "demand forecast", signed.id)]
    assert len(await ledger.access_events()) == 2
    assert events[0].at_ms == 1_750_000_000_000  # the injected clock
    with pytest.raises(UsageError, match="purpose"):
        await ledger.record_access(BUYER.address, "x", "")
    await ledger.verify()


# -- tamper evidence: edit the SQLite file behind the ledger's back -------------------------


async def _build(path: Path) -> None:
    async with open_ledger(path, config=LedgerConfig(clock=ManualClock(),
                                                     owner=OWNER)) as ledger:
        await ledger.deposit(BUYER.address, FUNDS)                        # 1
        await ledger.deposit(SELLER.address, BOND_FUNDS)                  # 2
        first, second = agreement(n=1), agreement(n=2)
        await ledger.record_agreement(first)                              # 3, 4
        await ledger.settle(receipt(first, BUYER))                        # 5
        await ledger.record_agreement(second)                             # 6, 7
        await ledger.record_access(SELLER.address, "sales", "forecast")   # 8
        await ledger.settle(receipt(second, BUYER, latency_ms=None))      # 9
        await ledger.deposit(BUYER.address, Credits(100))                          # 10


def _tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER entries_no_update")
        db.execute("DROP TRIGGER entries_no_delete")
        for statement in statements:
            db.execute(statement)


async def _verify(path: Path, expected_head: tuple[int, str] | None = None) -> None:
    async with open_ledger(path) as ledger:
        await ledger.verify(expected_head=expected_head)


TAMPERING = {
    "edited amount": (["UPDATE entries SET body = replace(body, '20000', '90000') "
                       "WHERE seq = 1"], 1, "edited"),
    "edited receipt verdict": (["UPDATE entries SET body = replace(body, '\"met\"', "
                                "'\"breached\"') WHERE seq = 5"], 5, "edited"),
    "reordered": (["UPDATE entries SET seq = -6 WHERE seq = 6",
                   "UPDATE entries SET seq = 6 WHERE seq = 7",
                   "UPDATE entries SET seq = 7 WHERE seq = -6"], 6, "does not follow"),
    "deleted in the middle": (["DELETE FROM entries WHERE seq = 8"], 8, "missing"),
    "deleted the newest": (["DELETE FROM entries WHERE seq = 10"], 10, "newest"),
    "deleted the first": (["DELETE FROM entries WHERE seq = 1"], 1, "missing"),
    "balance edited": (["UPDATE balances SET available = available + 1"], 10, "balance"),
}


@pytest.mark.parametrize("case", TAMPERING, ids=list(TAMPERING))
async def test_verify_finds_an_edited_reordered_or_deleted_entry(
        tmp_path: Path, case: str) -> None:
    statements, seq, problem = TAMPERING[case]
    path = tmp_path / "ledger.db"
    await _build(path)
    await _verify(path)
    _tamper(path, *statements)
    with pytest.raises(LedgerTampered, match=problem) as caught:
        await _verify(path)
    assert caught.value.seq == seq


async def test_a_rehashed_edit_breaks_the_link_to_the_next_entry(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    with sqlite3.connect(path) as db:
        prev, body = db.execute("SELECT prev_hash, body FROM entries WHERE seq = 8").fetchone()
    body = body.replace(b"forecast", b"marketing")
    _tamper(path, f"UPDATE entries SET body = x'{body.hex()}', "  # noqa: S608
                  f"hash = x'{entry_hash(prev, 8, 'access', body).hex()}' WHERE seq = 8")
    with pytest.raises(LedgerTampered, match="does not follow") as caught:
        await _verify(path)
    assert caught.value.seq == 9


def _rewrite(path: Path, seq: int, old: bytes, new: bytes) -> None:
    """Edit entry `seq` and re-hash it, every entry after it and the head: a full forgery."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT seq, kind, body FROM entries ORDER BY seq").fetchall()
        genesis = db.execute("SELECT prev_hash FROM entries WHERE seq = 1").fetchone()[0]
    prev = genesis
    statements = []
    for number, kind, body in rows:
        if number == seq:
            assert old in body
            body = body.replace(old, new)
        digest = entry_hash(prev, number, kind, body)
        statements.append(f"UPDATE entries SET body = x'{body.hex()}', "  # noqa: S608
                          f"prev_hash = x'{prev.hex()}', hash = x'{digest.hex()}' "
                          f"WHERE seq = {number}")
        prev = digest
    statements.append(f"UPDATE meta SET value = x'{prev.hex()}' "  # noqa: S608
                      "WHERE key = 'head_hash'")
    _tamper(path, *statements)


async def test_a_published_head_pins_history_against_a_full_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
        published = await ledger.head()
        await ledger.deposit(STRANGER.address, Credits(1))  # history may grow after publishing
    await _verify(path, expected_head=published)
    _rewrite(path, 8, b"forecast", b"marketing")  # an audit event, which moves no money
    # Re-chaining gave the deposit at entry 10 another previous hash than the one its
    # signature covers; without a money entry after the edit it would be consistent here.
    with pytest.raises(LedgerTampered, match="copied from another place") as moved:
        await _verify(path)
    assert moved.value.seq == 10
    with pytest.raises(LedgerTampered, match="published") as caught:
        await _verify(path, expected_head=published)
    assert caught.value.seq == published[0]


async def test_a_full_rewrite_cannot_forge_what_the_parties_signed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    # Entry 5 released PRICE to the seller; pay the buyer instead, re-hash it all.
    _rewrite(path, 5, f'"to_buyer":0,"to_seller":{PRICE.micro}'.encode(),
             f'"to_buyer":{PRICE.micro},"to_seller":0'.encode())
    with pytest.raises(LedgerTampered, match="other amounts than its receipt") as caught:
        await _verify(path)
    assert caught.value.seq == 5
    await _build(other := tmp_path / "other.db")
    _rewrite(other, 3, b'"wire":"', b'"wire":"00')  # a mangled agreement: not even hex pairs
    with pytest.raises(LedgerTampered) as caught:
        await _verify(other)
    assert caught.value.seq == 3


async def test_the_ledger_is_append_only_even_through_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    with sqlite3.connect(path) as db:
        for statement in ("UPDATE entries SET kind = 'deposit'", "DELETE FROM entries"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)


# -- failures: full disk, corrupt file, misuse -----------------------------------------------


async def test_a_full_disk_refuses_the_write_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    memo = "m" * 2_000
    async with open_ledger(path, config=LedgerConfig(max_bytes=256 * 1024,
                                                     owner=OWNER)) as ledger:
        await ledger.deposit(BUYER.address, FUNDS)
        await ledger.deposit(SELLER.address, BOND_FUNDS)
        signed = agreement()
        await ledger.record_agreement(signed)
        deposited = 0
        for filler in (memo, ""):  # fill with big entries, then the last gaps with small ones
            with pytest.raises(LedgerFull, match="nothing was written"):
                for _ in range(10_000):
                    await ledger.deposit(STRANGER.address, Credits(1), memo=filler)
                    deposited += 1
        assert 10 < deposited < 10_000
        head = await ledger.head()
        with pytest.raises(LedgerFull):
            await ledger.settle(receipt(signed, BUYER))
        assert await ledger.head() == head
        assert await ledger.balance(STRANGER.address) == Balance(Credits(deposited), ZERO)
        assert await ledger.settlement(signed.id) is None
        await ledger.verify()
    async with open_ledger(path) as ledger:  # space again: the same receipt now settles
        await ledger.settle(receipt(signed, BUYER))
        report = await ledger.verify()
        assert report.deposits == {"credit": FUNDS + BOND_FUNDS + Credits(deposited)}


async def test_a_file_that_is_not_a_ledger_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all " * 200)
    with pytest.raises(LedgerCorrupt, match="not an SQLite database"):
        async with open_ledger(garbage):
            pass
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('format', 'someone-else/3')")
    with pytest.raises(LedgerCorrupt, match="not an AAEX ledger"):
        async with open_ledger(other):
            pass


async def test_a_damaged_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page:3 * page] = b"\xa5" * page  # scribble over a whole page of the B-trees
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorrupt):
        await _verify(path)


async def test_a_closed_ledger_says_so(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "l.db") as ledger:
        pass
    assert "closed" in repr(ledger)
    with pytest.raises(UsageError, match="closed"):
        await ledger.balance(BUYER.address)
    async with open_ledger(None) as unowned:
        with pytest.raises(UsageError, match="without the node's key"):
            await unowned.deposit(BUYER.address, Credits(1))
    async with open_ledger(None, config=LedgerConfig(owner=OWNER)) as memory:
        with pytest.raises(UsageError, match="positive Credits"):
            await memory.deposit(BUYER.address, Credits(0))
        with pytest.raises(UsageError, match="checksum"):
            await memory.deposit(BUYER.address[:-1] + "q", Credits(1))


# -- money is signed; both sides keep books ----------------------------------------------------


async def test_a_deposit_added_by_editing_the_file_fails_verify(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    with sqlite3.connect(path) as db:
        seq, prev = db.execute("SELECT seq, hash FROM entries ORDER BY seq DESC").fetchone()
    body = (b'{"address":"' + STRANGER.address.encode() + b'","amount":1000000,"at_ms":1,'
            b'"currency":"credit","memo":"","signer":"' + OWNER.address.encode()
            + b'","signature":"' + b"00" * 64 + b'"}')
    digest = entry_hash(prev, seq + 1, "deposit", body)
    _tamper(path, f"INSERT INTO entries (seq, kind, body, prev_hash, hash) VALUES "  # noqa: S608
                  f"({seq + 1}, 'deposit', x'{body.hex()}', x'{prev.hex()}', x'{digest.hex()}')",
            f"UPDATE meta SET value = {seq + 1} WHERE key = 'head_seq'",  # noqa: S608
            f"UPDATE meta SET value = x'{digest.hex()}' WHERE key = 'head_hash'",  # noqa: S608
            f"INSERT INTO balances VALUES ('{STRANGER.address}', 'credit', 1000000, 0)")  # noqa: S608
    with pytest.raises(LedgerTampered, match="not signed by the ledger's owner") as caught:
        await _verify(path)
    assert caught.value.seq == seq + 1


async def test_a_ledger_opens_only_with_its_owners_key(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    await _build(path)
    with pytest.raises(LedgerError, match="belongs to node"):
        async with open_ledger(path, config=LedgerConfig(owner=STRANGER)):
            pass


async def test_withdrawal_is_signed_and_bounded_by_the_available_funds(ledger: Ledger) -> None:
    await ledger.record_agreement(agreement())
    with pytest.raises(InsufficientFunds):  # held escrow cannot be withdrawn
        await ledger.withdraw(BUYER.address, FUNDS - PRICE + Credits(1))
    await ledger.withdraw(BUYER.address, FUNDS - PRICE, memo="payout")
    assert await ledger.balance(BUYER.address) == Balance(ZERO, PRICE)
    report = await ledger.verify()
    assert report.deposits == {"credit": FUNDS + BOND_FUNDS - (FUNDS - PRICE)}


async def test_buyer_and_seller_books_give_the_same_statement(tmp_path: Path) -> None:
    """Two ledgers, one per party, record the same trades and agree to the micro-credit."""
    config = LedgerConfig(clock=ManualClock(), owner=OWNER)
    met, late, open_ = agreement(n=1), agreement(n=2, max_latency_ms=100), agreement(n=3)
    async with open_ledger(tmp_path / "buyer.db", config=config) as buyer, \
            open_ledger(tmp_path / "seller.db", config=config) as seller:
        await buyer.deposit(BUYER.address, FUNDS)
        for signed in (met, late, open_):
            await buyer.record_agreement(signed, task={"n": signed.id})
            await seller.record_agreement(signed, role="seller")
        await seller.record_delivery(met.id, {"result_hash": "ab" * 32})
        assert (await seller.open_agreements())[0].delivery == {"result_hash": "ab" * 32}
        for signed, latency in ((met, 200), (late, 5_000)):
            paid = receipt(signed, BUYER, latency_ms=latency)
            await buyer.settle(paid)
            assert (await seller.settle(paid)).verdict == paid.receipt.verdict
        ours, theirs = await buyer.statement(SELLER.address), await seller.statement(BUYER.address)
        assert ours.net == -theirs.net == -(PRICE - PENALTY)  # we owe the price, less a penalty
        assert [line.verdict for line in ours.lines] == ["met", "breached", "open"]
        assert differences(ours, theirs) == []
        position = (await seller.positions())[SELLER.address]
        # netted per partner: the penalty the seller owes offsets the price it is owed
        assert (position.receivable, position.payable) == (PRICE - PENALTY, ZERO)
        assert (await seller.balance(SELLER.address)) == Balance()  # nothing held on a sale
        assert [o.signed.id for o in await buyer.open_agreements()] == [open_.id]
        assert (await buyer.open_agreements())[0].task == {"n": open_.id}
        await buyer.verify()
        await seller.verify()
    async with open_ledger(tmp_path / "other.db", config=config) as other:
        await other.record_agreement(met, role="seller")
        gaps = differences(await other.statement(BUYER.address), ours)
        assert any("missing on ours" in gap for gap in gaps)
        assert any("receipt we never got" in gap for gap in gaps)


async def test_verify_reads_one_snapshot_while_another_process_appends(tmp_path: Path) -> None:
    """`aaex ledger verify` runs beside the node: the head it reads matches the entries."""
    path = tmp_path / "ledger.db"
    await _build(path)
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as writer, \
            open_ledger(path) as reader:
        async def write() -> None:
            for _ in range(300):
                await writer.deposit(STRANGER.address, Credits(1))

        appending = asyncio.create_task(write())
        reports = []
        while not appending.done():
            reports.append(await reader.verify())
        await appending
    assert len(reports) > 3 and reports[-1].entries >= reports[0].entries
