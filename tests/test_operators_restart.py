"""Books between two `aaex node run` processes when one of them restarts, and what a
stranger's key gets when it asks for a statement.

The seller's node is the network's seed, on a fixed p2p port as a seed is; everything else
listens on port 0, so a restarted node comes back on new ports. A partner's endpoints are
then found again through its signed agent record, which the restarted node re-publishes in
the DHT: `aaex account reconcile` works after either node restarts, without a new trade.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from aaex_agents import Agent, StaticDirectory, open_runtime
from aaex_agents.transport.http import HttpTransport
from marketplace.trade.negotiation import Decline
from marketplace.trade.statements import StatementQuery
from tests.node_kit import aaex, running_node
from tests.peers.llm_servers import free_port

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/{port}"]
drain_timeout = 2

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = {{ cost = 1.0 }}
"""

BUYER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[market]
negotiation_window = 0.5

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""


async def _reconciled(capsys: pytest.CaptureFixture[str], config: Path, partner: str) -> None:
    code, out, _ = await aaex(capsys, "account", "reconcile", "--config", str(config),
                              "--with", partner)
    assert code == 0 and ": agree" in out, out


async def test_reconcile_works_after_either_node_restarts_and_strangers_get_no_statement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seller_dir, buyer_dir = tmp_path / "seller", tmp_path / "buyer"
    seller_dir.mkdir()
    buyer_dir.mkdir()
    seller_toml, buyer_toml = seller_dir / "node.toml", buyer_dir / "node.toml"
    seller_toml.write_text(SELLER_TOML.format(port=free_port()))
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [1, 2, 3]}))

    async with AsyncExitStack() as nodes:
        seller = await nodes.enter_async_context(running_node(seller_toml))
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        buyer = await nodes.enter_async_context(running_node(buyer_toml))
        code, out, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                    "shopper", "10", "--json")
        assert code == 0, err
        shopper = json.loads(out)["account"]["address"]
        code, out, err = await aaex(
            capsys, "market", "buy", "forecast.demand", "--config", str(buyer_toml),
            "--agent", "shopper", "--task", str(task), "--budget", "5", "--deadline", "10",
            "--json")
        assert code == 0, err
        forecaster = json.loads(out)["seller"]

        # The buyer restarts on new ports; the seller's node learned the old ones.
        assert await buyer.stop() == 0
        before = buyer.ready["endpoints"]
        buyer = await nodes.enter_async_context(running_node(buyer_toml))
        assert not set(buyer.ready["endpoints"]) & set(before)
        await _reconciled(capsys, seller_toml, shopper)

        # The seller restarts (a seed keeps its p2p port; its HTTP port is new). The buyer's
        # node lost its only peer: before, its reconcile failed with "no endpoint is known"
        # until something made it dial its seed again.
        assert await seller.stop() == 0
        before = seller.ready["endpoints"]
        seller = await nodes.enter_async_context(running_node(seller_toml))
        assert seller.ready["endpoints"] != before
        await _reconciled(capsys, buyer_toml, forecaster)
        await _reconciled(capsys, seller_toml, shopper)

        # A key that never traded with the seller gets a refusal, and no checkpoint.
        stranger = Agent(name="stranger")
        directory = StaticDirectory({forecaster: [
            e for e in seller.ready["endpoints"] if e.startswith("http")]})
        async with open_runtime(stranger, transports=[HttpTransport()],
                                directory=directory) as runtime:
            refused = await runtime.context(stranger).ask(forecaster, StatementQuery(),
                                                          timeout=10)
        assert isinstance(refused, Decline) and refused.reason == "no_trades", refused
