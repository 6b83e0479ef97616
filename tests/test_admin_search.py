"""`GET /market/search` refuses what it cannot do in one line: bad parameters (400), no DHT
(503), more searches at once than `MAX_SEARCHES` (429), a DHT that does not answer (504)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import web

from discovery.query import Query
from marketplace.contracts.reputation import ReputationBook
from marketplace.node import admin_search
from marketplace.node.admin_search import MAX_SEARCHES, add_search_route


class _StuckDiscovery:
    """A DHT that never answers (the fault injected); counts the lookups that began."""

    def __init__(self) -> None:
        self.started = 0
        self.waiting = asyncio.Event()

    async def lookup(self, query: Query) -> list[Any]:
        self.started += 1
        if self.started == MAX_SEARCHES:
            self.waiting.set()
        await asyncio.Event().wait()
        return []


class _Market:
    reputation = ReputationBook()


class _Node:
    def __init__(self, discovery: Any) -> None:
        self.discovery, self.market = discovery, _Market()


@asynccontextmanager
async def _served(node: Any) -> AsyncIterator[str]:
    app = web.Application()
    add_search_route(app, node)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/market/search"
    finally:
        await runner.cleanup()


async def _get(url: str, **params: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http, \
            http.get(url, params=params) as response:
        return response.status, (await response.json()).get("error", "")


async def test_bad_parameters_are_400_naming_them() -> None:
    async with _served(_Node(_StuckDiscovery())) as url:
        assert (await _get(url))[1].startswith("capability: ")
        assert (await _get(url, capability="x", limit="0"))[1].startswith("limit: ")
        assert (await _get(url, capability="x", max_price="lots"))[1].startswith("max_price: ")
        status, error = await _get(url, capability="x", where="((")
        assert status == 400 and error.startswith("--where '((': ")
        assert (await _get(url, capability="x" * 201))[0] == 400


async def test_no_dht_is_503() -> None:
    async with _served(_Node(None)) as url:
        status, error = await _get(url, capability="x")
    assert status == 503 and "joined no DHT" in error


async def test_searches_beyond_the_limit_are_429_and_a_stuck_dht_is_504(
        monkeypatch: Any) -> None:
    monkeypatch.setattr(admin_search, "SEARCH_TIMEOUT_S", 5.0)
    stuck = _StuckDiscovery()
    async with _served(_Node(stuck)) as url:
        held = [asyncio.create_task(_get(url, capability="x")) for _ in range(MAX_SEARCHES)]
        await asyncio.wait_for(stuck.waiting.wait(), 10)
        status, error = await _get(url, capability="x")
        assert status == 429 and f"{MAX_SEARCHES} searches are running" in error
        answers = await asyncio.wait_for(asyncio.gather(*held), 30)
    assert {status for status, _ in answers} == {504}


def test_a_search_result_carries_the_sellers_consensus_incentive() -> None:
    """Search shows trust: a seller's share of its capability's emission in the latest epoch
    the node's validators computed, next to its reputation; None where no epoch covers it."""
    from aaex_agents import Identity
    from discovery.records import PriceModel, ServiceAd, SlaOffer
    from marketplace.consensus import ONE, YumaParams, yuma_epoch
    from marketplace.consensus.board import ConsensusBook
    from tests.market_kit import cr

    good, bad = Identity.generate(), Identity.generate()
    result = yuma_epoch([ONE], [[60_000, 5_000]], [[0, 0]], YumaParams())
    book = ConsensusBook()
    book.record("forecast.demand", 1, [good.address, bad.address], result)

    def ad(seller: Identity, capability: str) -> ServiceAd:
        return ServiceAd(address=seller.address, seq=1, expires_at=1_800_000_060.0,
                         capability=capability, price=PriceModel(amount=cr(1.0)),
                         sla=SlaOffer(p50_ms=50, p95_ms=100, deadline_s=10, availability=0.99))

    found = admin_search.search_result(ad(good, "forecast.demand"), ReputationBook(), book)
    other = admin_search.search_result(ad(bad, "forecast.demand"), ReputationBook(), book)
    unseen = admin_search.search_result(ad(good, "route.vrp"), ReputationBook(), book)
    assert found["incentive"] == book.incentive("forecast.demand", good.address)
    assert found["incentive"] > other["incentive"] > 0
    assert unseen["incentive"] is None
