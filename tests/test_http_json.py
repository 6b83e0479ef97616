"""Bad JSON bodies on every HTTP surface of a node: a 400 (or A2A's parse error) naming the
cause in one line, never a 500, never a traceback in the log.

A2A (no key needed), the OpenAI-compatible gateway and the admin API's writes all read
their bodies through `aaex_agents.transport.bodies.read_json`; answers from peers are
parsed by the same `parse_json`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from aaex_agents import HttpTransport, PeerRejected
from aaex_agents.interop.uagents import peer_reason
from aaex_agents.transport.bodies import MAX_JSON_DEPTH, parse_json
from marketplace.node.config import parse_config
from marketplace.node.node import Node, open_node

DEEP = b"[" * 100_000 + b"]" * 100_000
BAD = {"deeply nested": DEEP, "nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
       "cut short": b'{"agent": "shopper", "amount": [1, 2', "NaN": b'{"amount": NaN}'}


def test_nesting_is_bounded_and_every_failure_is_a_one_line_value_error() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(at_limit) is not None
    deeper = b"[" + at_limit + b"]"
    for body in (deeper, *BAD.values(), b"", b"\xff", b"[1] trailing"):
        with pytest.raises(ValueError) as caught:
            parse_json(body)
        assert "\n" not in str(caught.value) and len(str(caught.value)) <= 200
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_json(deeper)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                           "agents": [{"name": "shopper", "class": "marketplace:Buyer"}],
                           "interop": {"listen": "127.0.0.1:0"},
                           "gateway": {"listen": "127.0.0.1:0", "agent": "shopper"}},
                          base=tmp_path)
    async with open_node(config) as running:
        yield running


async def _post(url: str, body: bytes, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http, http.post(url, data=body,
                                                          headers=headers) as response:
        return response.status, json.loads(await response.read())


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_json_gets_a_one_line_reason_on_every_surface(
        node: Node, tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    assert node.interop is not None and node.gateway_url is not None
    body = BAD[case]
    token = (tmp_path / "data" / "admin.token").read_text().strip()
    shopper = next(iter(node.runtime.agents))
    caplog.set_level(logging.INFO)

    status, answer = await _post(f"{node.interop.url}/a2a/{shopper}", body)  # no key
    # A JSON-RPC parse error travels with HTTP 200, as a2a-sdk's server sends it.
    assert (status, answer["error"]["code"]) == (200, -32700)
    a2a = answer["error"]["message"]
    status, answer = await _post(node.gateway_url + "/v1/chat/completions", body, token)
    assert status == 400
    gateway = answer["error"]["message"]
    status, answer = await _post(node.admin_url + "/account/deposit", body, token)
    assert status == 400
    admin = answer["error"]
    for reason in (a2a, gateway, admin):
        assert "not JSON" in reason and "\n" not in reason and len(reason) < 300
        if case.startswith(("deeply", "nested")):
            assert f"nested deeper than {MAX_JSON_DEPTH} levels" in reason
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert await node.ledger.entries() == []


async def test_deep_json_from_a_peer_is_a_refusal_not_a_crash() -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=400, body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_post("/aaex/v1/envelope", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = HttpTransport()
    try:
        port = runner.addresses[0][1]
        with pytest.raises(PeerRejected) as caught:
            await client.request(f"http://127.0.0.1:{port}/aaex/v1/envelope", b"x", timeout=10)
        assert caught.value.reason == "rejected"
    finally:
        await client.aclose()
        await runner.cleanup()
    assert peer_reason(400, DEEP)[0] == "rejected"  # what a uAgents peer's 400 is read with
