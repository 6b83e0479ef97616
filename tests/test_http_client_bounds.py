"""Outbound HTTP is bounded the same way for envelopes and for uAgents: a peer that answers
with more than the frame limit gets its reply dropped, never held whole."""

from __future__ import annotations

import asyncio

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


class _ClosesIdleOnNextRequest(asyncio.Protocol):
    """Fault injector: a server that answers the first request of a connection, then closes
    the connection when the next request arrives on it, unanswered, as a server whose idle
    keep-alive timeout fires just as a client reuses the connection does."""

    def __init__(self, served: list[int]) -> None:
        self._served = served
        self._answered = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._answered:
            self._transport.abort()  # a reset, before a byte of answer
            return
        if b"\r\n\r\n" in data:  # the request (head and its short body) is in
            self._answered = True
            self._served.append(1)
            self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


async def test_a_pooled_connection_closed_by_the_server_under_a_request_is_not_a_failure() -> None:
    served: list[int] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _ClosesIdleOnNextRequest(served), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(3):  # each one after the first meets a pooled connection closed
                assert await post_bounded(session, url, b"x", {}, timeout=5,
                                          limit=100) == (200, b"ok")
        assert len(served) == 3
    finally:
        server.close()
        await server.wait_closed()
