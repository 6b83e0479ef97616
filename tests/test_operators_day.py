"""An operator's day, scripted: two `aaex node run` nodes driven through the CLI only.

One session does every item an operator met in a day: a malformed task refused before any
money moves; one purchase whose amounts are the same in the CLI's text and JSON, in both
admin APIs behind the web view and on both ledgers; a payment made outside the market,
signed by both nodes, closing receivable and payable to zero; the seller withdrawing what it
earned; a seller that breaks its promise banned, with the ban and its expiry in `aaex node
status`; no traceback anywhere; and fewer than 10 log lines per idle node-minute.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from aaex_agents.money import ZERO, Credits
from marketplace.contracts.ledger import open_ledger
from tests.node_kit import aaex, buy_until, running_node, two_operators
from tests.test_operators_disputes import SELLER_TOML as DISPUTES_SELLER_TOML
from tests.test_operators_expiry import BUYER_TOML

SELLER_TOML = DISPUTES_SELLER_TOML + """
[[agents]]
name = "laggard"
class = "tests.peers.market_agents:LateForecaster"
settings = {{ cost = 1.0, latency_ms = 1000, work_seconds = 2.5 }}
"""
"""The disputes tests' seller node, plus one that delivers after the latency it promised."""


IDLE_S = 30.0
"""How long both nodes are watched with nothing to do."""


@pytest.mark.timeout(300)
async def test_an_operators_day_through_the_cli(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    ops = two_operators(tmp_path, {"history": [1, 2, 3]}, BUYER_TOML)
    buyer_toml, seller_toml = str(ops.buyer_toml), str(ops.seller_toml)
    bad_task = tmp_path / "bad.json"
    bad_task.write_text(json.dumps({"foo": "bar"}))
    said: list[str] = []  # everything the CLI printed, to look for tracebacks

    async def run(*argv: str) -> tuple[int, str]:
        code, out, err = await aaex(capsys, *argv)
        said.append(out + err)
        return code, out + err

    async def account(config: str) -> dict[str, str]:
        code, out = await run("account", "show", "--config", config, "--json")
        assert code == 0, out
        [agent] = json.loads(out)
        found: dict[str, str] = agent
        return found

    async with running_node(ops.buyer_toml) as buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        assert (await run("account", "deposit", "--config", buyer_toml, "shopper", "10"))[0] == 0
        async with running_node(ops.seller_toml) as seller:
            # 1. A malformed task: refused naming the field, nothing negotiated or held.
            for _ in range(20):
                code, out = await run("market", "buy", "forecast.demand", "--config",
                                      buyer_toml, "--agent", "shopper", "--task", str(bad_task),
                                      "--budget", "5", "--deadline", "10")
                if "does not fit" in out:
                    break
            assert code == 1 and "history: required" in out and "offers" not in out, out
            assert (await account(buyer_toml))["available"] == "10"

            # 2. One purchase, the same amounts in every view of both nodes.
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5",
                                        deadline="10", done=lambda code, out: code == 0)
            said.append(out)
            assert code == 0, out
            paid_text = next(line for line in out.splitlines() if "settled: paid" in line)
            code, out = await run("account", "show", "--config", seller_toml, "--json")
            [forecaster_address] = [a["address"] for a in json.loads(out)
                                    if a["agent"] == "forecaster"]
            code, out = await run("account", "statement", "--config", buyer_toml, "--with",
                                  forecaster_address, "--json")
            [line] = json.loads(out)["lines"]
            price = line["price"]
            assert f"paid {price} credits" in paid_text and line["amount"] == price
            async with aiohttp.ClientSession() as http:
                views = []
                for node in (buyer, seller):
                    async with http.get(node.ready["admin"] + "/agreements") as response:
                        views.extend(await response.json())
            assert {(v["price"], v["price_micro"], v["owed"], v["owed_micro"])
                    for v in views} == {(price, line["price_micro"], price, line["amount_micro"])}
            shopper = await account(buyer_toml)
            assert shopper["payable"] == price

            # 3. Paid by bank transfer: each operator records it; signed by both, it closes.
            code, out = await run("account", "settle", "--config", seller_toml, "--agent",
                                  "forecaster", "--with", shopper["address"], price,
                                  "--reference", "BANK-7")
            assert code == 0 and out.startswith("offered"), out
            code, out = await run("account", "settle", "--config", buyer_toml, "--with",
                                  forecaster_address, price, "--reference", "BANK-7")
            assert code == 0 and out.startswith("recorded"), out
            code, out = await run("account", "show", "--config", seller_toml, "--json")
            sellers = {a["agent"]: a for a in json.loads(out)}
            assert (sellers["forecaster"]["receivable"], sellers["forecaster"]["available"]) \
                == ("0", price)
            assert (await account(buyer_toml))["payable"] == "0"

            # 4. The seller cashes out what it earned.
            code, out = await run("account", "withdraw", "--config", seller_toml,
                                  "forecaster", price)
            assert code == 0, out

            # 5. A seller that delivers after the latency it promised is banned, visibly.
            code, out = await run("market", "buy", "forecast.weekly", "--config", buyer_toml,
                                  "--agent", "shopper", "--task", str(ops.task), "--budget",
                                  "5", "--deadline", "6")
            assert "receipt" in out and ": not_delivered" in out, out
            code, out = await run("node", "status", "--config", buyer_toml, "--json")
            [ban] = json.loads(out)["bans"]
            assert (ban["agent"], ban["reason"]) == ("shopper", "not_delivered")
            assert ban["expires_in_s"] > 0
            code, out = await run("node", "status", "--config", buyer_toml)
            assert "not_delivered" in out, out  # the text view lists it too

            # 6. Quiet: nothing to do, next to nothing logged.
            before = (len(buyer.events), len(seller.events))
            await asyncio.sleep(IDLE_S)
            logged = (len(buyer.events) - before[0], len(seller.events) - before[1])
            assert all(n * 60 / IDLE_S < 10 for n in logged), logged
    for node in (buyer, seller):
        assert not [t for t in node.unstructured if "Traceback" in t], node.unstructured
        assert not any("Traceback" in json.dumps(e) for e in node.events)
    assert not [s for s in said if "Traceback" in s]
    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            sold = [x for x in await books.lines() if str(x.price) == price]
            assert sold and all(x.price.micro == line["price_micro"] for x in sold)
            assert len(await books.payments()) == 1
    async with open_ledger(ops.books("seller")) as books:
        assert (await books.balance(forecaster_address)).available == ZERO
        assert Credits.parse(price) > ZERO
