"""The admin API's operator routes on a real node: the token, bad input, credits, buying."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents.money import ZERO
from marketplace.contracts.agreement import Agreement, SignedAgreement, Terms
from marketplace.contracts.books import line_of
from marketplace.node.api import dialogue_state
from marketplace.node.config import parse_config
from marketplace.node.node import open_node
from marketplace.trade.negotiation import CallForProposals, Dialogue, DialogueState
from tests.market_kit import BUYER, SELLER, cr, receipt


def node_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config({
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
        "agents": [{"name": "shopper", "class": "marketplace:Buyer"},
                   {"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
                    "settings": {"cost": 2.0}}]}, base=tmp_path)


WRITES = ("/account/deposit", "/account/withdraw", "/reconcile", "/market/buy")
GOOD_BUY = {"agent": "shopper", "capability": "forecast.demand", "task": {"history": [1]},
            "budget": "2.5", "deadline": 5}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/account/deposit", {"agent": "shopper", "amount": "1,5"}, "amount"),
    ("/account/deposit", {"agent": "shopper", "amount": "0"}, "amount"),
    ("/account/deposit", {"agent": "shopper", "amount": 1, "memo": 7}, "memo"),
    ("/account/withdraw", {"agent": "forecasterX", "amount": 1}, "agent"),
    ("/account/withdraw", "not an object", "body"),
    ("/reconcile", {"with": "aaex1short"}, "with"),
    ("/reconcile", {}, "with"),
    ("/market/buy", {**GOOD_BUY, "capability": "Forecast"}, "capability"),
    ("/market/buy", {**GOOD_BUY, "task": [1, 2]}, "task"),
    ("/market/buy", {**GOOD_BUY, "budget": -1}, "budget"),
    ("/market/buy", {**GOOD_BUY, "deadline": "soon"}, "deadline"),
    ("/market/buy", {**GOOD_BUY, "deadline": 0}, "deadline"),
    ("/market/buy", {**GOOD_BUY, "where": "price >"}, "where"),
    ("/market/buy", {**GOOD_BUY, "agent": None}, "agent"),
    # payments and disputes read their bodies the way every other write does
    ("/account/settle", "not an object", "body"),
    ("/account/settle", {"with": "aaex1short", "amount": "1", "reference": "x"}, "with"),
])
async def test_bad_input_is_a_400_naming_the_field(tmp_path: Path, path: str, body: object,
                                                   field: str) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        async with http.post(node.admin_url + path, data=json.dumps(body),
                             headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 400
            assert (await response.json())["error"].startswith(f"{field}: ")
        assert await node.ledger.entries() == []


async def test_the_token_guards_writes_and_money_reads_in_credits(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        data = tmp_path / "data"
        assert json.loads((data / "admin.json").read_text())["url"] == node.admin_url
        token = (data / "admin.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        async def call(method: str, path: str, body: Any = None,
                       headers: dict[str, str] | None = None) -> tuple[int, Any]:
            async with http.request(method, node.admin_url + path, json=body,
                                    headers=headers) as response:
                if response.content_type == "application/x-ndjson":
                    return response.status, [json.loads(x) for x in
                                             (await response.text()).splitlines()]
                return response.status, await response.json()

        for path in WRITES:
            status, answer = await call("POST", path, {}, {"Authorization": "Bearer x"})
            assert status == 401 and "admin.token" in answer["error"]
        assert (await call("POST", "/account/deposit", {"agent": "shopper", "amount": 1}))[0] \
            == 401
        status, answer = await call("POST", "/account/deposit",
                                    {"agent": "shopper", "amount": "2.75"}, auth)
        assert status == 200 and answer["account"]["available"] == "2.75"
        assert answer["account"]["available_micro"] == 2_750_000
        status, answer = await call("POST", "/account/withdraw",
                                    {"agent": "shopper", "amount": 3}, auth)
        assert status == 409 and "2.75 credits available, 3 credits needed" in answer["error"]
        shopper = next(a for a in node.runtime.agents.values() if a.name == "shopper")
        status, accounts = await call("GET", "/accounts")
        assert {(a["agent"], a["available"]) for a in accounts} == {("shopper", "2.75"),
                                                                   ("forecaster", "0")}
        assert (await call("GET", "/balances"))[1][shopper.address]["available"] == "2.75"
        entry = (await call("GET", "/ledger"))[1]["entries"][0]
        assert (entry["kind"], entry["amount"], entry["amount_micro"]) == \
            ("deposit", "2.75", 2_750_000)
        status, answer = await call("GET", f"/statement?with={shopper.address}")
        assert status == 200 and answer["lines"] == [] and answer["net"] == "0"
        assert (await call("GET", "/statement?with=nobody"))[0] == 400

        # Without libp2p the node's market finds nobody: the purchase fails, said in the
        # stream's last line, and nothing was held.
        status, events = await call("POST", "/market/buy", GOOD_BUY, auth)
        assert status == 200 and events[-1]["event"] == "failed"
        assert "no provider delivered" in events[-1]["reason"]
        assert (await node.ledger.balance(shopper.address)).held == ZERO
    assert not (data / "admin.json").exists()


def test_a_countersigned_dialogue_without_work_is_not_shown_as_agreed() -> None:
    now_ms = int(time.time() * 1000)
    terms = Terms(task_hash=hashlib.sha256(b"t").hexdigest(), capability="forecast.demand",
                  price=1_000, max_latency_ms=500, deadline_ms=now_ms + 60_000)
    signed = SignedAgreement.create(Agreement(
        dialogue_id="d1", buyer=BUYER.address, seller=SELLER.address, terms=terms,
        agreed_at_ms=now_ms), BUYER, SELLER)
    cfp = CallForProposals(dialogue="d1", capability="forecast.demand", max_price=cr(1),
                           max_latency_ms=500, max_deadline_s=60, respond_by=0)
    agreed = Dialogue("d1", BUYER.address, cfp, started=0, state=DialogueState.AGREED,
                      agreement=signed.to_wire())
    open_line = {signed.id: line_of(signed, None)}
    assert dialogue_state(agreed, {}, set(), now_ms) == "countersigned, no task"
    assert dialogue_state(agreed, open_line, set(), now_ms) == "agreed"
    assert dialogue_state(agreed, open_line, set(), now_ms + 120_000) == \
        "countersigned, no task"
    assert dialogue_state(agreed, open_line, {signed.id}, now_ms) == "delivered"
    paid = {signed.id: line_of(signed, receipt(signed, BUYER))}
    assert dialogue_state(agreed, paid, set(), now_ms) == "settled (met)"
    proposed = Dialogue("d2", BUYER.address, cfp, started=0)
    assert dialogue_state(proposed, {}, set(), now_ms) == "proposed"
