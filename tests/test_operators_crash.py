"""Two operators' nodes, each its own `aaex node run` process, key, config and ledger: the buyer
is SIGKILLed at each step of a purchase (inside its own log call for that step, so exactly
between it and the next; tests/peers/crash_on_event.py) and restarted, the seller is
SIGTERMed right after it countersigned. Every agreement ends settled (or refunded) once on
both books, and both verify.

The buyer-crash tests share one seller's node, as one operator's node serves many buyers;
each test has a buyer (key, config, ledger) of its own and reads its own lines on the
seller's books.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aaex_agents import Credits
from aaex_agents.money import ZERO
from marketplace.contracts.ledger import open_ledger
from tests.node_kit import ROOT, NodeProcess, running_node

pytestmark = pytest.mark.asyncio(loop_scope="module")

SELLER_TOML = """
[node]
identity = "seller.key"
data_dir = "seller-data"
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
refresh_period = 60
drain_timeout = {drain}

[[agents]]
name = "forecaster"
class = "tests.peers.market_agents:SlowForecaster"
[agents.settings]
cost = 1.0
exponent = 1.0
latency_ms = 5000
deadline_s = 12
work_seconds = {work}
"""

BUYER_TOML = """
[node]
identity = "buyer.key"
data_dir = "buyer-data"
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
refresh_period = 60

[market]
grace = 2
resolve_period = 0.5
negotiation_window = 1.0

[[agents]]
name = "buyer"
class = "tests.peers.market_agents:StandingBuyer"
settings = {{ orders = 1, budget = 5.0, deadline = 15.0 }}
"""


async def _fund(buyer_toml: Path, credits: float) -> None:
    """`aaex account deposit` while the buyer's node is stopped (on its ledger file)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.cli", "account", "deposit", "--config",
        str(buyer_toml), "buyer", str(credits), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, (out, err)


async def _books(path: Path, buyer: str | None = None) -> tuple[list[Any], list[Any], Any]:
    """Open agreements, lines and balances of the books at `path` (verified first); only
    those with `buyer` when given (the seller's books hold every test's buyer)."""
    async with open_ledger(path) as ledger:
        await ledger.verify()
        open_, lines = await ledger.open_agreements(), await ledger.lines()
        balances = await ledger.balances()
    if buyer is not None:
        open_ = [o for o in open_ if o.signed.agreement.buyer == buyer]
        lines = [line for line in lines if line.buyer == buyer]
    return open_, lines, balances


@dataclass
class Seller:
    """The seller's node the buyer-crash tests share, each test with a buyer of its own."""

    node: NodeProcess
    books: Path

    def mark(self) -> int:
        """Where this test's events start in the seller's log."""
        return len(self.node.events)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seller(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Seller]:
    base = tmp_path_factory.mktemp("seller")
    config = base / "seller.toml"
    config.write_text(SELLER_TOML.format(work=1.5, drain=10))
    async with running_node(config) as node:
        yield Seller(node, base / "seller-data" / "ledger.sqlite")


async def _settled_on_both(buyer: NodeProcess, seller: Seller, since: int,
                           buyer_books: Path, *, settled_before: bool = False
                           ) -> tuple[list[Any], list[Any]]:
    """Once the restarted buyer settled (unless it had before it died) and the seller booked
    the receipt, both books."""
    if not settled_before:
        await buyer.event("settled")
    await seller.node.event("receipt_booked", since=since)
    open_buyer, buyer_lines, _ = await _books(buyer_books)
    open_seller, seller_lines, _ = await _books(seller.books, buyer_lines[0].buyer)
    assert (open_buyer, open_seller) == ([], [])
    return buyer_lines, seller_lines


@pytest.mark.parametrize("kill_at", ["escrowed", "task_running", "delivered", "settled"])
async def test_a_buyer_killed_at_any_step_settles_once_after_its_restart(
        tmp_path: Path, seller: Seller, kill_at: str) -> None:
    since = seller.mark()
    buyer_toml = tmp_path / "buyer.toml"
    buyer_toml.write_text(BUYER_TOML.format(seed=seller.node.ready["p2p"][0]))
    # fund the buyer on its own books before its node first starts: the deposit makes
    # the keys the node's first start would, and the node then trades with those
    await _fund(buyer_toml, 10)
    if kill_at == "task_running":  # the seller works 1.5 s: the kill lands while it works
        buyer = await NodeProcess.start(buyer_toml)
        await seller.node.event("sale_task_started", since=since)
        assert await buyer.stop(signal.SIGKILL) == -signal.SIGKILL
    else:  # the buyer dies inside its own log call for that step, before the next one
        buyer = await NodeProcess.start(buyer_toml, crash_at=kill_at)
        await asyncio.wait_for(buyer.process.wait(), 60)
        assert await buyer.stop() == -signal.SIGKILL
        assert [e["event"] for e in buyer.events if e.get("event") in (
            "escrowed", "delivered", "settled")][-1] == kill_at
    async with running_node(buyer_toml) as restarted:
        buyer_lines, seller_lines = await _settled_on_both(
            restarted, seller, since, tmp_path / "buyer-data" / "ledger.sqlite",
            settled_before=kill_at == "settled")
    assert [line.verdict for line in buyer_lines] == ["met"]  # the seller delivered in time
    assert [(s.agreement_id, s.verdict, s.amount) for s in seller_lines] == [
        (b.agreement_id, b.verdict, b.amount) for b in buyer_lines]
    _, _, balances = await _books(tmp_path / "buyer-data" / "ledger.sqlite")
    seller_address = buyer_lines[0].seller
    assert balances[seller_address].available == buyer_lines[0].price  # paid exactly once
    assert all(b.held == ZERO for b in balances.values())


async def test_a_buyer_killed_while_negotiating_holds_nothing_after_its_restart(
        tmp_path: Path, seller: Seller) -> None:
    """Killed before it booked anything: nothing is held, and no book owes anything."""
    buyer_toml = tmp_path / "buyer.toml"
    buyer_toml.write_text(BUYER_TOML.format(seed=seller.node.ready["p2p"][0]))
    await _fund(buyer_toml, 10)
    buyer = await NodeProcess.start(buyer_toml)
    await buyer.event("negotiating")
    assert await buyer.stop(signal.SIGKILL) == -signal.SIGKILL
    async with running_node(buyer_toml):
        open_buyer, lines, balances = await _books(tmp_path / "buyer-data" / "ledger.sqlite")
    assert (open_buyer, lines) == ([], [])
    assert all(b.held == ZERO for b in balances.values())
    assert sum((b.available for b in balances.values()), Credits(0)) == Credits.parse(10)
    buyer_address = next(iter(balances))
    _, seller_lines, _ = await _books(seller.books, buyer_address)
    # A sale the seller countersigned for the dead buyer moved no money; the seller asks the
    # restarted buyer about it and both close it as expired (tests/test_operators_expiry.py).
    assert all(line.verdict in ("open", "expired") and line.amount == ZERO
               for line in seller_lines)


async def test_a_seller_stopped_right_after_countersigning_still_delivers(
        tmp_path: Path) -> None:
    """SIGTERM between the countersignature and the task: the drain serves the agreed work."""
    seller_toml, buyer_toml = tmp_path / "seller.toml", tmp_path / "buyer.toml"
    seller_toml.write_text(SELLER_TOML.format(work=0.5, drain=20))
    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        await _fund(buyer_toml, 10)
        async with running_node(buyer_toml) as buyer:
            await seller.event("countersigned")
            seller.process.send_signal(signal.SIGTERM)
            settled = await buyer.event("settled")
            assert await seller.stop() == 0
    assert settled["verdict"] == "met"
    drained = [e for e in seller.events if str(e.get("message", "")).startswith("drain:")]
    assert drained and "delivered" in drained[-1]["message"], drained
    _, seller_lines, _ = await _books(tmp_path / "seller-data" / "ledger.sqlite")
    assert [line.verdict for line in seller_lines] in (["met"], ["open"])  # receipt may race
