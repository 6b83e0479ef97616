"""Outbound HTTP is bounded the same way for envelopes and for uAgents: a peer that answers
with more than the frame limit gets its reply dropped, never held whole."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from aaex_agents.errors import TransportError
from aaex_agents.transport.http import post_bounded


async def test_an_answer_past_the_limit_is_dropped_and_one_within_it_is_whole() -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["size"]))

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/?size="
            status, body = await post_bounded(session, url + "1000", b"", {}, timeout=5,
                                              limit=1000)
            assert (status, len(body)) == (200, 1000)
            with pytest.raises(TransportError, match="more than 1000 bytes"):
                await post_bounded(session, url + "1001", b"", {}, timeout=5, limit=1000)
    finally:
        await runner.cleanup()
