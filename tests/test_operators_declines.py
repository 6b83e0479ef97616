"""A decline is an answer: `aaex market buy` names every seller that declined and why.

Two `aaex node run` processes: a seller node with a seller priced within the budget and one
far above it, and a buyer node whose operator buys from the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.node_kit import aaex, running_node

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
drain_timeout = 2

[[agents]]
name = "cheap"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 2.0, exponent = 4.0 }

[[agents]]
name = "dear"
class = "tests.peers.seller_peer:ForecastSeller"
settings = { cost = 50.0, exponent = 4.0 }
"""

BUYER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[market]
negotiation_window = 5  # seconds: a loaded machine must not turn the call stale

[[agents]]
name = "shopper"
class = "marketplace:Buyer"
"""

OUT_OF_REACH = "cannot_meet_terms (price, latency or deadline out of reach)"


async def test_market_buy_names_the_sellers_that_declined_and_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "seller").mkdir()
    (tmp_path / "buyer").mkdir()
    seller_toml, buyer_toml = tmp_path / "seller" / "node.toml", tmp_path / "buyer" / "node.toml"
    seller_toml.write_text(SELLER_TOML)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [10, 20, 30]}))

    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        code, out, _ = await aaex(capsys, "account", "show", "--config", str(seller_toml),
                                  "--json")
        addresses = {a["agent"]: a["address"] for a in json.loads(out)}
        async with running_node(buyer_toml):
            code, _, err = await aaex(capsys, "account", "deposit", "--config",
                                      str(buyer_toml), "shopper", "25")
            assert code == 0, err

            def buy(budget: str, *json_flag: str) -> list[str]:
                return ["market", "buy", "forecast.demand", "--config", str(buyer_toml),
                        "--agent", "shopper", "--task", str(task), "--budget", budget,
                        "--deadline", "20", *json_flag]

            for _ in range(20):  # until both sellers' ads reached the buyer's DHT
                code, out, err = await aaex(capsys, *buy("10", "--json"))
                if "found 2 seller(s)" in err:
                    break
            assert code == 0 and "found 2 seller(s)" in err, err
            done = json.loads(out)
            assert done["event"] == "done" and done["seller"] == addresses["cheap"]
            assert done["declined"] == [{"seller": addresses["dear"],
                                         "reason": "cannot_meet_terms",
                                         "detail": "price, latency or deadline out of reach"}]
            assert (f"{addresses['dear'][:16]}… declined (cannot_meet_terms: price, latency or "
                    "deadline out of reach)") in err  # the offers of the round
            assert f"declined by {addresses['dear']}: {OUT_OF_REACH}" in err

            # Neither can meet half a credit: the purchase fails, naming both and why.
            code, out, _ = await aaex(capsys, *buy("0.5"))
            assert code == 1
            assert out.startswith("found 2 seller(s)") and "failed: forecast.demand" in out
            for name in ("cheap", "dear"):
                assert f"declined by {addresses[name]}: {OUT_OF_REACH}" in out
            assert "no_agreement" not in out  # each decline is said once, as a decline
