"""The admin API refuses what is not for it: bad query values (400), foreign Host headers
(403, the DNS-rebinding guard), and it walks the chain once per head, not once per poll."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from aaex_agents import Credits
from marketplace.node.config import parse_config
from marketplace.node.node import Node, open_node


def node_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return parse_config({
        "node": {"http": "", "admin": "127.0.0.1:0", "p2p": []},
        "agents": [{"name": "shopper", "class": "marketplace:Buyer"}]}, base=tmp_path)


async def _get(url: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(("query", "problem"), [
    ("limit=abc", "limit: 'abc' is not an integer"),
    ("limit=", "limit: '' is not an integer"),
    ("limit=0", "limit: must be from 1 to 1000, got 0"),
    ("limit=-5", "limit: must be from 1 to 1000, got -5"),
    ("limit=100000", "limit: must be from 1 to 1000, got 100000"),
])
async def test_a_query_value_that_does_not_parse_is_a_400_naming_it(
        tmp_path: Path, query: str, problem: str) -> None:
    async with open_node(node_config(tmp_path)) as node:
        status, document = await _get(f"{node.admin_url}/ledger?{query}")
    assert (status, document) == (400, {"error": problem})


async def test_every_read_route_answers_junk_queries_without_failing(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node:
        await node.ledger.deposit(node.runtime.agents[_shopper(node)].address, Credits(5))
        statuses = {}
        for route in ("/status", "/agents", "/ads", "/dialogues", "/agreements", "/balances",
                      "/accounts", "/statement?with=aaex1nope", "/statement?agent=x",
                      "/ledger?limit=1&limit=abc", "/ledger?limit=1"):
            async with aiohttp.ClientSession() as http, \
                    http.get(f"{node.admin_url}{route}&junk=%ff" if "?" in route
                             else f"{node.admin_url}{route}?junk=%ff") as response:
                statuses[route] = response.status
    assert statuses.pop("/statement?with=aaex1nope") == 400
    assert statuses.pop("/statement?agent=x") == 400
    assert set(statuses.values()) == {200}


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1:1",
                                  "localhost.evil.example:{port}", ""])
async def test_a_foreign_host_header_is_refused(tmp_path: Path, host: str) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        port = node.admin_url.rsplit(":", 1)[1]
        token = (tmp_path / "data" / "admin.token").read_text().strip()
        headers = {"Host": host.format(port=port)}
        async with http.get(node.admin_url + "/balances", headers=headers) as response:
            assert response.status == 403
            assert "is not this admin API" in (await response.json())["error"]
        async with http.post(node.admin_url + "/account/deposit", json={
                "agent": "shopper", "amount": 1}, headers={
                **headers, "Authorization": f"Bearer {token}"}) as response:
            assert response.status == 403
        assert await node.ledger.entries() == []


async def test_the_admin_api_answers_to_its_own_names(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node:
        port = node.admin_url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
            status, _ = await _get(node.admin_url + "/status", Host=host)
            assert status == 200, host


async def test_the_ledger_view_verifies_once_per_head(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node:
        walks = _count_verify(node)
        answers = await asyncio.gather(*(_get(f"{node.admin_url}/ledger") for _ in range(5)))
        assert walks == [1]
        assert {document["verified"] for _, document in answers} == {True}
        await node.ledger.deposit(node.runtime.agents[_shopper(node)].address, Credits(5))
        for _ in range(3):
            status, document = await _get(f"{node.admin_url}/ledger")
        assert walks == [2]
        assert (status, document["verified"]) == (200, True)
        assert document["head"] == (await node.ledger.head())[1]


def _shopper(node: Node) -> str:
    return next(a for a, agent in node.runtime.agents.items() if agent.name == "shopper")


def _count_verify(node: Node) -> list[int]:
    """Count the ledger's full verifications (a spy around `Ledger.verify`, no fault)."""
    walks = [0]
    verify = node.ledger.verify

    async def counted(**kwargs: Any) -> Any:
        walks[0] += 1
        return await verify(**kwargs)

    node.ledger.verify = counted  # type: ignore[method-assign]
    return walks
