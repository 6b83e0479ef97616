"""Two operators, one market: two `aaex node run` processes trade from the terminal alone.

Each node has its own TOML, key, data dir and ledger; the buyer's node joins the DHT through
the seller's. The operators fund with `aaex account deposit`, buy with `aaex market buy`,
and compare books with `aaex account statement` and `aaex account reconcile`.
"""

from __future__ import annotations

import json
import stat
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.node_kit import aaex as aaex
from tests.node_kit import running_node

ROOT = Path(__file__).resolve().parent.parent

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


async def post(url: str, body: object, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, \
            http.post(url, data=json.dumps(body), headers=headers) as response:
        return response.status, await response.json()


async def test_two_operators_fund_trade_and_reconcile_from_the_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seller_dir, buyer_dir = tmp_path / "seller", tmp_path / "buyer"
    seller_dir.mkdir()
    buyer_dir.mkdir()
    seller_toml, buyer_toml = seller_dir / "node.toml", buyer_dir / "node.toml"
    seller_toml.write_text(SELLER_TOML)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"history": [10, 20, 30]}))

    async with running_node(seller_toml) as seller:
        buyer_toml.write_text(BUYER_TOML.format(seed=seller.ready["p2p"][0]))
        async with running_node(buyer_toml) as buyer:
            buyer_ready = buyer.ready
            admin, token_file = buyer_ready["admin"], buyer_dir / "data" / "admin.token"
            assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
            assert stat.S_IMODE((buyer_dir / "data").stat().st_mode) == 0o700
            token = token_file.read_text().strip()
            code, out, _ = await aaex(capsys, "account", "show", "--config", str(buyer_toml),
                                      "--json")
            assert code == 0
            [shopper] = json.loads(out)
            assert (shopper["agent"], shopper["available"]) == ("shopper", "0")
            code, out, _ = await aaex(capsys, "account", "show", "--config", str(seller_toml),
                                      "--json")
            forecaster = json.loads(out)[0]["address"]

            # Write routes need the node's token; bad input is a 400 naming the field.
            deposit = admin + "/account/deposit"
            assert (await post(deposit, {"agent": "shopper", "amount": 5}, None))[0] == 401
            assert (await post(deposit, {"agent": "shopper", "amount": 5}, "nope"))[0] == 401
            for body, field in (({"agent": "shopper", "amount": "lots"}, "amount"),
                                ({"agent": "shopper", "amount": -2}, "amount"),
                                ({"agent": "shopper"}, "amount"),
                                ({"agent": "nobody", "amount": 1}, "agent"),
                                ({"amount": 1}, "agent")):
                status, answer = await post(deposit, body, token)
                assert status == 400 and answer["error"].startswith(f"{field}: "), answer

            code, out, _ = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                      "shopper", "25")
            assert code == 0 and "deposited 25 credits to shopper" in out
            # Once through the config's data dir, once naming the admin URL and token file.
            for node in (["--config", str(buyer_toml), "--where", "strategy_exponent == 4.0"],
                         ["--admin", admin, "--token-file", str(token_file)]):
                code, out, err = await aaex(
                    capsys, "market", "buy", "forecast.demand", *node, "--agent", "shopper",
                    "--task", str(task), "--budget", "10", "--deadline", "30", "--json")
                assert code == 0, err
                done = json.loads(out)
                assert done["event"] == "done" and done["result"] == {"forecast": [20.0]}
                assert done["seller"] == forecaster and done["verdict"] == "met"
                for step in ("found 1 seller(s)", "agreement ", "delivered", "receipt ",
                             "settled: paid"):
                    assert step in err

            code, out, _ = await aaex(capsys, "account", "statement", "--config",
                                      str(buyer_toml), "--with", forecaster, "--json")
            ours = json.loads(out)
            code, out, _ = await aaex(capsys, "account", "statement", "--config",
                                      str(seller_toml), "--with", shopper["address"], "--json")
            theirs = json.loads(out)
            assert len(ours["lines"]) == 2 and ours["lines"] == theirs["lines"]
            assert ours["net_micro"] == -theirs["net_micro"] < 0
            assert {line["verdict"] for line in ours["lines"]} == {"met"}
            for config, partner in ((buyer_toml, forecaster), (seller_toml, shopper["address"])):
                code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                          str(config), "--with", partner)
                assert code == 0 and ": agree" in out and "signed its ledger at entry" in out
            # The seller node's signed head, as the buyer's operator got it, pins its books.
            code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                      str(buyer_toml), "--with", forecaster, "--json")
            (kept := tmp_path / "seller-checkpoint.json").write_text(
                json.dumps(json.loads(out)["agents"][0]["checkpoint"]))
            code, out, _ = await aaex(capsys, "ledger", "verify", str(
                seller_dir / "data" / "ledger.sqlite"), "--against", str(kept))
            assert code == 0 and "unchanged up to the checkpoint" in out

            code, out, _ = await aaex(capsys, "node", "status", "--config", str(seller_toml),
                                      "--json")
            status = json.loads(out)
            assert status["accounts"][0]["receivable"] == theirs["net"]
            assert status["open_agreements"] == []
            code, out, _ = await aaex(capsys, "node", "status", "--config", str(seller_toml))
            assert "accounts (credits)" in out and "ads published" in out

        # The buyer's node is stopped: money still moves on its books, signed by its key.
        assert not (buyer_dir / "data" / "admin.json").exists()
        left = 25 - Decimal(ours["net"].lstrip("-"))
        code, out, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                    "shopper", "1.5", "--json")
        assert code == 0 and "node not running" in err
        assert Decimal(json.loads(out)["account"]["available"]) == left + Decimal("1.5")
        code, out, _ = await aaex(capsys, "ledger", "verify", str(buyer_dir / "data" /
                                                                    "ledger.sqlite"))
        assert code == 0
        # A node killed without cleaning up leaves a stale admin.json: the books still read.
        (buyer_dir / "data" / "admin.json").write_text(json.dumps(
            {"url": "http://127.0.0.1:9", "node": shopper["address"]}))
        code, out, err = await aaex(capsys, "account", "show", "--config", str(buyer_toml))
        assert code == 0 and "stale admin.json" in err and "shopper" in out
        code, _, err = await aaex(capsys, "account", "reconcile", "--config", str(buyer_toml),
                                  "--with", forecaster)
        assert code == 2 and "node not running" in err
