"""The node's live web view, in a real headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import pytest

from aaex_agents import Agent, Credits, HttpTransport, StaticDirectory, open_runtime
from marketplace.consensus import yuma_epoch
from marketplace.node.config import parse_config
from marketplace.node.node import open_node
from marketplace.trade.negotiation import CallForProposals, Propose, new_dialogue_id
from tests.market_kit import cr

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Buyer(Agent):
    pass


def node_config(tmp_path: Path):  # type: ignore[no-untyped-def]
    # No drain: the open dialogue the page shows would otherwise hold the stop for 10 s.
    return parse_config({
        "node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": [], "drain_timeout": 0},
        "agents": [{"name": "forecaster", "class": "tests.peers.seller_peer:ForecastSeller",
                    "settings": {"cost": 2.0, "exponent": 4.0}}]}, base=tmp_path)


async def _chromium(url: str, *args: str, profile: Path) -> bytes:
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
        "--window-size=1280,900", *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0
    return out


async def test_the_admin_api_serves_the_web_view(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node, aiohttp.ClientSession() as http:
        async with http.get(node.admin_url + "/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
    for endpoint in ("/status", "/agents", "/ads", "/accounts", "/dialogues", "/agreements",
                     "/balances", "/ledger", "/bans", "/audit", "/audit/partners",
                     "/consensus"):
        assert endpoint in page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed; .ci/run "
                    "installs it (apt-get install chromium)")
async def test_the_web_view_renders_live_node_state_in_chromium(tmp_path: Path) -> None:
    async with open_node(node_config(tmp_path)) as node:
        seller = next(iter(node.runtime.agents.values()))
        buyer = Buyer()
        async with open_runtime(buyer, transports=[HttpTransport()], directory=StaticDirectory(
                {seller.address: list(node.runtime.endpoints)})) as runtime:
            reply = await runtime.context(buyer).ask(seller.address, CallForProposals(
                dialogue=new_dialogue_id(), capability="forecast.demand", task={"history": [1]},
                    max_price=cr(10),
                max_latency_ms=1000, max_deadline_s=60, respond_by=time.time() + 60))
            assert isinstance(reply, Propose)
        await node.ledger.deposit(buyer.address, Credits(3_250_000))
        await node.ledger.record_access(seller.address, "sales/2026-q3.parquet",
                                        "demand forecast", owner=buyer.address)
        node.market.for_agent(seller.address).backoff.ban(buyer.address, time.time(),
                                                          "not_delivered")
        node.market.consensus.record("forecast.demand", 7, [seller.address, buyer.address],
                                     yuma_epoch([1], [[49_149, 16_383]], [[0, 0]]))

        dom = (await _chromium(node.admin_url + "/", "--dump-dom",
                               profile=tmp_path / "profile-dom")).decode()
        assert "forecaster" in dom                      # rendered from /agents
        assert "proposed" in dom                        # the live dialogue, from /dialogues
        assert "3.25" in dom                            # the deposit in credits, /balances
        assert "chain verified" in dom                  # from /ledger
        assert "not_delivered" in dom                   # a ban and its reason, from /bans
        assert "0.7500" in dom and "0.3333" in dom      # incentive, quality: /consensus
        assert 'id="status">running' in dom       # the page reached the node
        assert "agent1" in dom                          # each agent's uAgents address
        assert "interop: off" in dom                    # and the interop endpoints
        assert "sales/2026-q3.parquet" in dom and "demand forecast" in dom  # from /audit
        assert "· 1 entries" in dom

        shot = tmp_path / "web-view.png"
        await _chromium(node.admin_url + "/", f"--screenshot={shot}",
                        profile=tmp_path / "profile-shot")
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
