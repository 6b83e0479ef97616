"""kill -9 a process in the middle of settling, again and again, then reopen the ledger.

The child (tests/peers/ledger_settler.py) funds, records and settles agreements in a loop
on a real SQLite file and is SIGKILLed after a random number of committed steps, plus a
random few milliseconds, so the kill lands inside transactions as well as between them.
After every kill the parent reopens the file and checks: the chain verifies, money is
conserved (every available and held balance adds up to the deposits), each agreement the
child reported is there, each reported settlement is there, no agreement is settled twice,
and balances follow from the agreements and settlements alone.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import Counter
from pathlib import Path

from aaex_agents.money import ZERO, Credits
from marketplace.contracts.ledger import Entry, Ledger, LedgerConfig, open_ledger
from tests.market_kit import OWNER

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 6


async def _all_entries(ledger: Ledger) -> list[Entry]:
    entries: list[Entry] = []
    while batch := await ledger.entries(after=entries[-1].seq if entries else 0):
        entries.extend(batch)
    return entries


async def _check(path: Path, agreed: set[str], settled: set[str]) -> tuple[int, int]:
    async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as ledger:
        report = await ledger.verify()
        balances = await ledger.balances()
        assert sum((b.available + b.held for b in balances.values()), ZERO) == \
            report.deposits["credit"]
        agreements = {a.id: a for a in await ledger.agreements()}
        assert agreed <= set(agreements), "an agreement reported as recorded was lost"
        for agreement_id in settled:
            assert await ledger.settlement(agreement_id) is not None
        entries = await _all_entries(ledger)
        payouts = Counter(e.body["agreement_id"] for e in entries
                          if e.kind in ("release", "refund"))
        assert all(count == 1 for count in payouts.values()), "an agreement was paid twice"
        # Balances again, from nothing but deposits, agreements and their settlements.
        expected: dict[str, list[Credits]] = {}
        for e in entries:
            if e.kind == "deposit":
                expected.setdefault(e.body["address"], [ZERO, ZERO])[0] += Credits(e.body["amount"])
        for agreement_id, signed in agreements.items():
            terms, body = signed.agreement.terms, signed.agreement
            buyer = expected.setdefault(body.buyer, [ZERO, ZERO])
            seller = expected.setdefault(body.seller, [ZERO, ZERO])
            settlement = await ledger.settlement(agreement_id)
            if settlement is None:  # only the buyer's price is held; a penalty is a debt
                buyer[0] -= terms.price
                buyer[1] += terms.price
            elif settlement.verdict == "met":
                buyer[0] -= terms.price
                seller[0] += terms.price
        assert {a: [b.available, b.held] for a, b in balances.items()} == expected
        return len(agreements), len(payouts)


async def _run_child(path: Path, round_: int, *extra: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.ledger_settler", str(path), str(round_), *extra,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), timeout=60) == b"ready\n"
    return process


def _note(line: bytes, agreed: set[str], settled: set[str]) -> None:
    kind, _, agreement_id = line.decode().strip().partition(" ")
    assert kind != "ERR", line
    (agreed if kind == "A" else settled).add(agreement_id)


async def test_kill_9_at_random_moments_loses_nothing_and_pays_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    rng = random.Random(20261123)  # noqa: S311 - fault timing, not cryptography
    agreed: set[str] = set()
    settled: set[str] = set()
    for round_ in range(1, ROUNDS + 1):
        process = await _run_child(path, round_)
        assert process.stdout is not None and process.stderr is not None
        for _ in range(rng.randint(3, 80)):
            line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
            assert line, (await process.stderr.read()).decode()
            _note(line, agreed, settled)
        if rng.random() < 0.7:
            await asyncio.sleep(rng.uniform(0, 0.004))  # land the kill mid-transaction
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        for line in (await process.stdout.read()).splitlines():  # committed before the kill
            _note(line, agreed, settled)
        await _check(path, agreed, settled)
    process = await _run_child(path, ROUNDS + 1, "--finish")
    assert process.stdout is not None
    for line in (await process.stdout.read()).splitlines():
        _note(line, agreed, settled)
    assert await process.wait() == 0
    recorded, paid = await _check(path, agreed, settled)
    assert recorded == paid >= len(agreed) > ROUNDS  # everything recovered and settled once
