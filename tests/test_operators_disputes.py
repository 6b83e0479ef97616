"""A dishonest buyer against an honest seller: two `aaex node run` processes, each with its
own key, config and ledger, driven through the CLI.

The buyer's node signs a receipt that lies about the delivery (tests/peers/lying_party.py):
a breach the seller's signed timings do not show, so the seller would owe its penalty and get
nothing. The seller's node checks the receipt against the delivery it signed, refuses to book
it and disputes it; the buyer's node checks the dispute against the same signed facts and
records it too. Nothing moves until a resolution both parties sign; the evidence bundle is
checked offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from marketplace.contracts.ledger import open_ledger
from tests.node_kit import Operators, aaex, buy_until, running_node
from tests.node_kit import two_operators as _two_operators
from tests.test_operators_expiry import BUYER_TOML

SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[[agents]]
name = "forecaster"
class = "tests.peers.market_agents:SlowForecaster"
settings = {{ cost = 1.0 }}
"""


FORECAST_TASK = {"history": [1, 2, 3]}


def operators(tmp_path: Path, task: dict[str, Any], buyer_toml: str = BUYER_TOML
              ) -> Operators:
    """A buyer node's folder (agent ``shopper``, this module's buyer config) and a seller's."""
    return _two_operators(tmp_path, task, buyer_toml)


async def test_a_buyers_false_breach_is_disputed_held_and_resolved_by_both_signatures(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = operators(tmp_path, FORECAST_TASK)
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    async with running_node(buyer_toml, lie="late") as buyer:
        seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        code, _, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                  "shopper", "10")
        assert code == 0, err
        async with running_node(seller_toml) as seller:
            _, out = await buy_until(capsys, ops, "forecast.demand", budget="5", deadline="10",
                                     done=lambda code, out: "breached" in out)
            assert "breached" in out, out  # the lie, signed by the buyer
            disputed = await seller.event("disputed")
            await buyer.event("disputed")  # its node recorded the seller's dispute
            agreement_id = disputed["agreement_id"]
            code, out, _ = await aaex(capsys, "node", "status", "--config", str(buyer_toml),
                                      "--json")
            [ban] = json.loads(out)["bans"]  # the buyer's delegator banned the "breaching" seller
            assert (ban["agent"], ban["reason"], ban["failures"]) == ("shopper", "breached", 1)
            assert ban["expires_in_s"] > 0
            async with aiohttp.ClientSession() as http:
                async with http.get(buyer.ready["admin"] + "/metrics") as response:
                    scraped = await response.text()
            assert "aaex_bans_total 1.0" in scraped and "aaex_disputes_total 1.0" in scraped
            code, out, _ = await aaex(capsys, "node", "status", "--config", str(buyer_toml))
            assert "breached" in out.split("sellers banned by our buyers")[1], out

            code, out, _ = await aaex(capsys, "dispute", "list", "--config", str(seller_toml),
                                      "--json")
            [listed] = json.loads(out)
            assert (listed["agreement_id"], listed["status"], listed["raised_by"]) == (
                agreement_id, "open", "seller")
            assert {"finished_at_ms", "verdict"} <= {c["field"] for c in listed["conflicts"]}
            async with aiohttp.ClientSession() as http:
                async with http.get(seller.ready["admin"] + "/metrics") as response:
                    assert "aaex_disputes_open 1.0" in await response.text()
            code, out, _ = await aaex(capsys, "account", "show", "--config", str(seller_toml),
                                      "--json")
            [forecaster] = json.loads(out)
            assert (forecaster["payable"], forecaster["receivable"]) == ("0", "0")
            code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                      str(seller_toml), "--with", listed["buyer"], "--json")
            [ours] = json.loads(out)["agents"][0]["ours"]["lines"]
            assert ours["verdict"] == "disputed"

            evidence = tmp_path / "evidence.json"
            code, _, err = await aaex(capsys, "dispute", "export", "--config",
                                      str(seller_toml), agreement_id[:12], "--out",
                                      str(evidence))
            assert code == 0, err
            code, out, _ = await aaex(capsys, "dispute", "verify", str(evidence), "--json")
            assert code == 0 and json.loads(out)["valid"], out
            bundle = json.loads(evidence.read_text())
            bundle["body"]["delivery"]["finished_at_ms"] += 600  # a doctored copy
            evidence.write_text(json.dumps(bundle))
            code, out, _ = await aaex(capsys, "dispute", "verify", str(evidence))
            assert code == 1 and out.startswith("INVALID"), out

            price = listed["price"]
            code, out, err = await aaex(capsys, "dispute", "resolve", "--config",
                                        str(seller_toml), agreement_id, "--to-seller", price)
            assert code == 0 and out.startswith("offered") and "offer_kept" in out, out + err
            code, out, err = await aaex(capsys, "dispute", "resolve", "--config",
                                        str(buyer_toml), agreement_id, "--to-seller", price)
            assert code == 0 and out.startswith("resolved") and "resolved" in out, out + err
            code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                      str(seller_toml), "--with", listed["buyer"])
            assert code == 0 and ": agree" in out, out
        code, out, _ = await aaex(capsys, "account", "show", "--config", str(buyer_toml),
                                  "--json")
        [shopper] = json.loads(out)
        assert shopper["available"] == str(10 - float(price)).rstrip("0").rstrip(".")

    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            [line] = await books.lines()
            assert (line.verdict, str(line.amount)) == ("resolved", price)


async def test_a_buyer_that_cannot_escrow_leaves_no_sale_on_the_sellers_books(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The call's maximum is what the buyer's books can escrow, so no seller countersigns
    a price the buyer cannot hold (it used to, leaving the sale open on the seller's books)."""
    ops = operators(tmp_path, FORECAST_TASK)
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    async with running_node(buyer_toml) as buyer:
        seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        code, _, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                  "shopper", "0.01")
        assert code == 0, err
        async with running_node(seller_toml) as seller:
            code, out = await buy_until(
                capsys, ops, "forecast.demand", budget="5", deadline="3",
                done=lambda code, out: "over_budget" in out or "cannot_meet" in out)
            assert code == 1, out
            assert "over_budget" in out or "cannot_meet" in out, out
            assert not [e for e in seller.events if e.get("event") == "countersigned"]
    async with open_ledger(ops.books("seller")) as books:
        assert await books.lines() == []


LLM_SELLER_TOML = """
[node]
http = "127.0.0.1:0"
admin = "127.0.0.1:0"
p2p = ["/ip4/127.0.0.1/tcp/0"]
seeds = ["{seed}"]
drain_timeout = 2

[llm]
backend = "llamacpp"
n_ctx = 512
n_threads = 1

[[agents]]
name = "llm"
class = "marketplace:LlmSeller"
settings = {{ price_in_per_1k = 0.01, price_out_per_1k = 0.02, max_tokens_cap = 16 }}
"""


async def test_a_buyer_paying_zero_tokens_for_a_metered_sale_is_disputed_by_the_seller(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The attack: a receipt re-signed with zero token counts released 0 of the escrow."""
    pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")
    ops = operators(tmp_path, {"messages": [{"role": "user", "content": "Say hello."}],
                               "max_tokens": 8})
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    async with running_node(buyer_toml, lie="zero_tokens") as buyer:
        seller_toml.write_text(LLM_SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        code, _, err = await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                                  "shopper", "1")
        assert code == 0, err
        async with running_node(seller_toml) as seller:
            code, out = await buy_until(capsys, ops, "llm.chat", budget="0.5", deadline="150",
                                        done=lambda code, out: code == 0)
            assert code == 0, out  # the lying buyer kept the text and paid nothing
            disputed = await seller.event("disputed")
            code, out, _ = await aaex(capsys, "dispute", "show", "--config", str(seller_toml),
                                      disputed["agreement_id"], "--json")
            shown = json.loads(out)
            fields = {c["field"]: c for c in shown["conflicts"]}
            assert {"usage.input_tokens", "usage.output_tokens"} <= fields.keys()
            assert fields["usage.output_tokens"]["buyer"] == "0"
            assert int(fields["usage.output_tokens"]["seller"]) > 0
            code, out, _ = await aaex(capsys, "account", "statement", "--config",
                                      str(seller_toml), "--with", shown["buyer"], "--json")
            [line] = json.loads(out)["lines"]
            assert (line["verdict"], line["amount"]) == ("disputed", "0")
    async with open_ledger(ops.books("seller")) as books:
        await books.verify()
        assert await books.settled_receipts() == []  # the 0-token receipt was never booked


async def test_the_arbiter_both_nodes_accept_ends_a_dispute_alone_by_an_offline_decision(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arbiter_key = tmp_path / "arbiter.key"
    code, out, _ = await aaex(capsys, "keys", "new", str(arbiter_key), "--json")
    arbiter = json.loads(out)["address"]
    ops = operators(tmp_path, FORECAST_TASK, BUYER_TOML.replace(
        "[market]\n", f'[market]\narbiter = "{arbiter}"\n'))
    seller_toml, buyer_toml = ops.seller_toml, ops.buyer_toml
    async with running_node(buyer_toml, lie="late") as buyer:
        seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        assert (await aaex(capsys, "account", "deposit", "--config", str(buyer_toml),
                           "shopper", "10"))[0] == 0
        async with running_node(seller_toml):  # trusts no arbiter: declines the call
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5", deadline="3",
                                        done=lambda code, out: "untrusted_arbiter" in out)
            assert code == 1 and "untrusted_arbiter" in out, out
        seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]).replace(
            "drain_timeout = 2\n", f'drain_timeout = 2\n\n[market]\narbiters = ["{arbiter}"]\n'))
        async with running_node(seller_toml) as seller:
            _, out = await buy_until(capsys, ops, "forecast.demand", budget="5", deadline="10",
                                     done=lambda code, out: "breached" in out)
            assert "breached" in out, out
            agreement_id = (await seller.event("disputed"))["agreement_id"]
            await buyer.event("disputed")
            evidence, decision = tmp_path / "evidence.json", tmp_path / "decision.json"
            assert (await aaex(capsys, "dispute", "export", "--config", str(buyer_toml),
                               agreement_id, "--out", str(evidence)))[0] == 0
            stranger = tmp_path / "stranger.key"
            await aaex(capsys, "keys", "new", str(stranger))
            code, _, err = await aaex(capsys, "dispute", "decide", str(evidence), "--key",
                                      str(stranger), "--to-seller", "1", "--out", str(decision))
            assert code != 0 and "names arbiter" in err, err
            code, out, err = await aaex(capsys, "dispute", "decide", str(evidence), "--key",
                                        str(arbiter_key), "--to-seller", "0.5", "--out",
                                        str(decision), "--note", "half: the timings conflict")
            assert code == 0, err
            code, out, err = await aaex(capsys, "dispute", "resolve", "--config",
                                        str(seller_toml), agreement_id, "--decision",
                                        str(decision))
            assert code == 0 and out.startswith("resolved") and "the partner: resolved" in out, \
                out + err
    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            [line] = [line for line in await books.lines() if line.agreement_id == agreement_id]
            assert (line.verdict, str(line.amount)) == ("resolved", "0.5")


async def test_a_sellers_signed_timings_the_buyer_saw_were_false_hold_the_money_in_dispute(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The other side lying: the seller signs every delivery as taking 1 ms; the buyer saw
    3.8 s against the agreed 3 s, so it signs a dispute instead of paying, and the price
    stays held on its books."""
    ops = operators(tmp_path, FORECAST_TASK)
    async with running_node(ops.buyer_toml) as buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]).replace(
            "cost = 1.0", "cost = 1.0, work_seconds = 3.8, latency_ms = 3000"))
        assert (await aaex(capsys, "account", "deposit", "--config", str(ops.buyer_toml),
                           "shopper", "10"))[0] == 0
        async with running_node(ops.seller_toml, lie="fast_clock") as seller:
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5",
                                        deadline="20", done=lambda code, out: "disput" in out)
            assert code == 1 and "disputed: " in out, out  # no one else sells it
            await seller.event("disputed")  # the seller's node recorded the buyer's dispute
            code, out, _ = await aaex(capsys, "dispute", "list", "--config",
                                      str(ops.buyer_toml), "--json")
            [listed] = json.loads(out)
            assert (listed["raised_by"], listed["role"], listed["status"]) == (
                "buyer", "buyer", "open")
            assert {"latency_ms", "verdict"} <= {c["field"] for c in listed["conflicts"]}
            code, out, _ = await aaex(capsys, "account", "show", "--config",
                                      str(ops.buyer_toml), "--json")
            [shopper] = json.loads(out)
            assert shopper["held"] == listed["price"]  # held: neither paid nor refunded
            code, out, _ = await aaex(capsys, "account", "reconcile", "--config",
                                      str(ops.buyer_toml), "--with", listed["seller"])
            assert code == 0 and ": agree" in out, out  # both books hold it disputed
    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            [line] = await books.lines()
            assert line.verdict == "disputed"


async def test_one_purchase_shows_the_same_amounts_in_every_view_of_both_nodes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's text and JSON, the admin API behind the web view, and both ledgers state
    the price and what was paid as the same decimal credits and micro-credits."""
    ops = operators(tmp_path, FORECAST_TASK)
    async with running_node(ops.buyer_toml) as buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        assert (await aaex(capsys, "account", "deposit", "--config", str(ops.buyer_toml),
                           "shopper", "10"))[0] == 0
        async with running_node(ops.seller_toml) as seller:
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5",
                                        deadline="10", done=lambda code, out: code == 0)
            assert code == 0, out
            paid_text = next(line for line in out.splitlines() if "settled: paid" in line)
            forecaster = next(iter(seller.ready["interop"]["agents"]))  # its one agent
            code, out, _ = await aaex(capsys, "account", "statement", "--config",
                                      str(ops.buyer_toml), "--with", forecaster, "--json")
            [ours] = json.loads(out)["lines"]
            async with aiohttp.ClientSession() as http:
                views = []
                for node in (buyer, seller):
                    async with http.get(node.ready["admin"] + "/agreements") as response:
                        views.extend(await response.json())
    assert f"paid {ours['amount']} credits" in paid_text and ours["amount"] == ours["price"]
    assert {(v["price"], v["price_micro"], v["owed"], v["owed_micro"]) for v in views} == {
        (ours["price"], ours["price_micro"], ours["amount"], ours["amount_micro"])}
    for side in ("buyer", "seller"):
        async with open_ledger(ops.books(side)) as books:
            [line] = await books.lines()
            assert (str(line.price), line.price.micro, str(line.amount), line.amount.micro) == (
                ours["price"], ours["price_micro"], ours["amount"], ours["amount_micro"])

