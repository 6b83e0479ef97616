"""The node's market service: `[market]` settings and one delegator per buying agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from aaex_agents import Agent
from aaex_agents.errors import UsageError
from marketplace.node.config import ConfigError, parse_config
from marketplace.node.node import open_node
from marketplace.trade.market import MarketSettings, NodeMarket
from tests.market_kit import BUYER, SELLER, agreement, cr, receipt


def config(market: dict[str, object]) -> dict[str, object]:
    return {"node": {"identity": "n.key"}, "market": market}


def test_market_settings_are_read_from_the_config() -> None:
    parsed = parse_config(config({"budget": 50, "per_task": 5.5}), base=Path("/tmp/x"))
    assert parsed.market == MarketSettings(budget=cr(50.0), per_task=cr(5.5))
    assert parse_config({"node": {}}, base=Path(".")).market == MarketSettings()


@pytest.mark.parametrize(("market", "named"), [
    ({"budget": -1}, "market.budget"),
    ({"per_seller": "lots"}, "market.per_seller"),
    ({"per_task": True}, "market.per_task"),
    ({"budgett": 5}, "budgett"),
])
def test_a_bad_market_field_is_named(market: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(config(market), base=Path("."))


async def test_each_buying_agent_gets_its_own_delegator_and_wallet() -> None:
    first, second = Agent(name="a"), Agent(name="b")

    async def find(capability: str, where: str | None) -> list[str]:
        return []

    market = NodeMarket({a.address: a for a in (first, second)}, find=find, ledger=None,
                        settings=MarketSettings(budget=cr(7)))
    one, other = market.for_agent(first.address), market.for_agent(second.address)
    assert one is market.for_agent(first.address) and one is not other
    assert one.reputation is other.reputation  # the node learns from every agent's receipts
    with pytest.raises(UsageError, match="not an agent of this node"):
        market.for_agent(Agent().address)


def test_reading_a_config_does_not_import_libp2p() -> None:
    # [market] settings live next to the market service, which must not drag the DHT (and
    # libp2p, over a second of imports) into every command that only reads a config.
    import subprocess
    import sys

    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys, marketplace.node.config; print('libp2p' in sys.modules)"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    assert probe.stdout.strip() == "False"


async def test_a_restarted_node_rates_sellers_from_the_receipts_on_its_books(
        tmp_path: Path) -> None:
    """Search and awards use the node's reputation book: it must survive a restart."""
    config = parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                           "agents": [{"name": "shopper", "class": "marketplace:Buyer"}]},
                          base=tmp_path)
    signed = agreement()
    async with open_node(config) as node:
        await node.ledger.record_agreement(signed, role="seller")
        await node.ledger.settle(receipt(signed, BUYER))
        assert node.market.reputation.score(SELLER.address).raters == 0  # learned live only
    async with open_node(config) as node:
        score = node.market.reputation.score(SELLER.address)
        assert (score.raters, score.score) == (1, 1.0)
