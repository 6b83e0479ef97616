"""A task that does not fit the seller's model is refused before anything is negotiated.

Two `aaex node run` processes: a seller node whose forecaster states its task model (its ad
carries the schema), and a buyer node whose operator buys from the terminal. ``{"foo":
"bar"}`` was once bought and paid for a forecast of 0.0; now `aaex market buy` fails naming
the missing field, and neither node's books hold anything of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaex_agents.money import ZERO
from marketplace.contracts.ledger import Balance, open_ledger
from tests.market_kit import cr
from tests.node_kit import aaex, buy_until, running_node, two_operators
from tests.test_operators_declines import BUYER_TOML

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 2

[[agents]]
name = "forecaster"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }
"""


async def test_market_buy_refuses_a_malformed_task_naming_the_field_and_books_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = two_operators(tmp_path, {"foo": "bar"}, "")
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    seller_toml.write_text(SELLER_TOML)

    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        async with running_node(buyer_toml) as buyer:
            code, _, err = await aaex(capsys, "account", "deposit", "--config",
                                      str(buyer_toml), "shopper", "25")
            assert code == 0, err
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="10",
                                        deadline="20",
                                        done=lambda code, out: "does not fit" in out)
            assert code == 1, out
            assert ("failed: forecast.demand: the task does not fit what its sellers take: "
                    "history: required") in out
            assert "found" not in out and "offers" not in out  # no seller was called

            # The schema is in the ad: search shows it compactly, and whole with --json.
            code, out, _ = await aaex(capsys, "market", "search", "forecast.demand",
                                      "--seed", seller.ready["p2p"][0])
            assert code == 0 and "history: array (required)" in out
            code, out, _ = await aaex(capsys, "market", "search", "forecast.demand",
                                      "--seed", seller.ready["p2p"][0], "--json")
            [ad] = json.loads(out)
            assert ad["task_schema"]["required"] == ["history"]
            assert ad["result_schema"]["required"] == ["forecast"]
            negotiating = [e for e in buyer.events if e.get("event") == "negotiating"]
        countersigned = [e for e in seller.events if e.get("event") == "countersigned"]
    assert negotiating == [] and countersigned == []
    async with open_ledger(tmp_path / "seller" / "data" / "ledger.sqlite") as books:
        assert await books.lines() == [] and await books.open_agreements() == []
    async with open_ledger(tmp_path / "buyer" / "data" / "ledger.sqlite") as books:
        assert await books.lines() == [] and await books.open_agreements() == []
        balances = list((await books.balances()).values())
    assert balances == [Balance(available=cr(25), held=ZERO)]  # the deposit, whole
