"""Money between partners, closed: a payment made outside the market, recorded by both.

Two `aaex node run` processes driven through the CLI: the buyer's agent buys, so it owes
the seller the price; the seller's operator records the bank transfer (`aaex account
settle`), which is only an offer, listed as pending on both sides (through a SIGKILL of the
seller's node and its restart), until the buyer's operator records the same transfer: then
it is signed by both and on both books, receivable and payable are zero and reconcile
agrees, and the seller withdraws what it was paid. A buyer's node that forges the seller's
half of a payment books nothing on the seller's side.
"""

from __future__ import annotations

import json
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from aaex_agents.money import ZERO, Credits
from marketplace.contracts.ledger import open_ledger
from tests.node_kit import NodeProcess, aaex, running_node
from tests.test_operators_disputes import FORECAST_TASK, SELLER_TOML, buy_until, operators


async def test_a_payment_both_operators_record_closes_the_debt_and_the_seller_withdraws_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = operators(tmp_path, FORECAST_TASK)
    buyer_toml, seller_toml = str(ops.buyer_toml), str(ops.seller_toml)

    async def show(config: str, *extra: str) -> list[dict[str, str]]:
        code, out, err = await aaex(capsys, "account", "show", "--config", config, "--json",
                                    *extra)
        assert code == 0, err
        accounts: list[dict[str, str]] = json.loads(out)
        return accounts

    async def reconcile(config: str, partner: str) -> dict[str, object]:
        code, out, err = await aaex(capsys, "account", "reconcile", "--config", config,
                                    "--with", partner, "--json")
        assert code == 0, out + err
        [agent] = json.loads(out)["agents"]
        assert agent["differences"] == []
        found: dict[str, object] = agent
        return found

    async def metrics(node: NodeProcess) -> str:
        async with aiohttp.ClientSession() as http, \
                http.get(node.ready["admin"] + "/metrics") as response:
            return await response.text()

    async with running_node(ops.buyer_toml) as buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        assert (await aaex(capsys, "account", "deposit", "--config", buyer_toml, "shopper",
                           "10"))[0] == 0
        async with AsyncExitStack() as restarted:
            seller = await restarted.enter_async_context(running_node(ops.seller_toml))
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5",
                                        deadline="10", done=lambda code, out: code == 0)
            assert code == 0, out
            [shopper] = await show(buyer_toml)
            [forecaster] = await show(seller_toml)
            price = forecaster["receivable"]
            assert Credits.parse(price) > ZERO and shopper["payable"] == price
            code, out, err = await aaex(capsys, "account", "withdraw", "--config", seller_toml,
                                        "forecaster", price)
            assert code != 0 and "aaex account settle" in err, out + err  # owed, not paid
            scraped = await metrics(seller)
            assert f'aaex_account_receivable_credits{{agent="forecaster"}} {float(price)}' \
                in scraped, scraped
            assert 'aaex_account_payable_credits{agent="forecaster"} 0.0' in scraped
            [owed] = await show(seller_toml, "--by-partner")
            assert (owed["partner"], owed["owes"], owed["amount"]) == (
                shopper["address"], "partner owes us", price)

            code, out, err = await aaex(capsys, "account", "settle", "--config", seller_toml,
                                        "--with", shopper["address"], price, "--reference",
                                        "BANK-0042")
            assert code == 0 and out.startswith("offered"), out + err
            [pending] = (await reconcile(seller_toml, shopper["address"]))["pending"]  # type: ignore[misc]
            assert (pending["waiting_for"], pending["amount"]) == ("the partner", price)
            [pending] = (await reconcile(buyer_toml, forecaster["address"]))["pending"]  # type: ignore[misc]
            assert (pending["waiting_for"], pending["payer"]) == ("us", shopper["address"])
            assert (await show(seller_toml))[0]["receivable"] == price  # one signature: nothing

            # The seller's node is killed and comes back: its half-signed offer is still
            # pending, and the buyer's countersignature still reaches it and is booked.
            assert await seller.stop(signal.SIGKILL) == -signal.SIGKILL
            seller = await restarted.enter_async_context(running_node(ops.seller_toml))
            [pending] = (await reconcile(seller_toml, shopper["address"]))["pending"]  # type: ignore[misc]
            assert (pending["waiting_for"], pending["amount"]) == ("the partner", price)

            code, out, err = await aaex(capsys, "account", "settle", "--config", buyer_toml,
                                        "--with", forecaster["address"], price, "--reference",
                                        "BANK-0042")
            assert code == 0 and out.startswith("recorded") and "books: recorded" in out, \
                out + err
            for config, partner in ((buyer_toml, forecaster), (seller_toml, shopper)):
                [account] = await show(config)
                assert (account["receivable"], account["payable"]) == ("0", "0"), account
                assert (await reconcile(config, partner["address"]))["pending"] == []
                assert await show(config, "--by-partner") == []
            code, out, err = await aaex(capsys, "account", "settle", "--config", buyer_toml,
                                        "--with", forecaster["address"], price, "--reference",
                                        "BANK-0042")  # again: sent again, booked once
            assert code == 0 and out.startswith("recorded") and "books: recorded" in out, \
                out + err
            code, out, err = await aaex(capsys, "account", "withdraw", "--config", seller_toml,
                                        "forecaster", price)
            assert code == 0, out + err
            assert (await show(seller_toml))[0]["available"] == "0"
            scraped = await metrics(seller)
            assert 'aaex_account_receivable_credits{agent="forecaster"} 0.0' in scraped
            assert 'aaex_account_available_credits{agent="forecaster"} 0.0' in scraped
    for side, payee_left in (("buyer", ZERO), ("seller", ZERO)):
        async with open_ledger(ops.books(side)) as books:
            await books.verify()
            [payment] = await books.payments()
            assert payment.payment.reference == "BANK-0042"
            assert (await books.balance(forecaster["address"])).available == payee_left


async def test_a_payment_whose_partner_signature_is_forged_is_refused_by_the_partners_node(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ops = operators(tmp_path, FORECAST_TASK)
    buyer_toml, seller_toml = str(ops.buyer_toml), str(ops.seller_toml)
    async with running_node(ops.buyer_toml, lie="forged_payment") as buyer:
        ops.seller_toml.write_text(SELLER_TOML.format(seed=buyer.ready["p2p"][0]))
        assert (await aaex(capsys, "account", "deposit", "--config", buyer_toml, "shopper",
                           "10"))[0] == 0
        async with running_node(ops.seller_toml) as seller:
            code, out = await buy_until(capsys, ops, "forecast.demand", budget="5",
                                        deadline="10", done=lambda code, out: code == 0)
            assert code == 0, out
            code, out, _ = await aaex(capsys, "account", "show", "--config", seller_toml,
                                      "--json")
            [forecaster] = json.loads(out)
            price = forecaster["receivable"]
            code, out, err = await aaex(capsys, "account", "show", "--config", buyer_toml,
                                        "--json")
            [shopper] = json.loads(out)
            code, out, err = await aaex(capsys, "account", "settle", "--config", buyer_toml,
                                        "--with", forecaster["address"], price, "--reference",
                                        "FORGED-1")
            assert code == 0 and "refused: payment_refused" in out, out + err
            await seller.event("payment_refused", timeout=10)
            code, out, err = await aaex(capsys, "account", "reconcile", "--config", seller_toml,
                                        "--with", shopper["address"], "--json")
            [agent] = json.loads(out)["agents"]
            assert agent["pending"] == [] and agent["ours"]["net"] == price, out + err
            code, out, _ = await aaex(capsys, "account", "show", "--config", seller_toml,
                                      "--json")
            assert json.loads(out)[0]["receivable"] == price  # still owed
    async with open_ledger(ops.books("seller")) as books:
        await books.verify()
        assert await books.payments() == []
