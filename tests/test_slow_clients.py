"""Slow and greedy clients: every HTTP listener of a node cuts them and keeps serving others.

A client trickling its headers or its body is closed once the listener's timeout passes,
while it is still sending; a connection beyond the listener's limits (in all, or from one IP
address) is answered 503 and closed at once; a legitimate request gets through meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents import HttpTransport
from aaex_agents.transport.listener import ServerLimits
from marketplace.node.config import NodeConfig, parse_config
from marketplace.node.gateway import GatewaySettings, open_gateway
from marketplace.node.node import open_node

SAFETY_S = 30.0
"""Bound on waits that must end much sooner; a failure, never a timing assert."""
TOKEN = "gateway-test-token"  # noqa: S105 - the test gateway's bearer key


async def _echo(frame: bytes) -> bytes:
    return frame[::-1]


async def _connect(url_or_port: str | int, *, local: str = "127.0.0.1") -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter]:
    port = url_or_port if isinstance(url_or_port, int) else int(
        url_or_port.split("//")[1].split("/")[0].rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (a reset is a close too)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def _trickle(writer: asyncio.StreamWriter, opening: bytes) -> None:
    """Send `opening`, then one byte every 50 ms, forever (under every size limit for long)."""
    with contextlib.suppress(ConnectionError):
        writer.write(opening)
        while True:
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"a")


@contextlib.asynccontextmanager
async def _serving(limits: ServerLimits) -> AsyncIterator[tuple[HttpTransport, str]]:
    server, client = HttpTransport(limits=limits), HttpTransport()
    try:
        async with server.serve(_echo) as endpoint:
            assert endpoint is not None
            yield client, endpoint
    finally:
        await client.aclose()
        await server.aclose()


HEAD = b"POST /aaex/v1/envelope HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("phase", ["headers", "body"])
async def test_trickling_clients_are_cut_while_a_real_request_gets_through(phase: str) -> None:
    limits = ServerLimits(header_timeout=0.5, body_timeout=0.5, max_connections=50,
                          max_connections_per_ip=50)
    length = b"Content-Length: 60000\r\n\r\n"  # under the frame limit: the body is awaited
    opening = HEAD + (b"X-Slow: " if phase == "headers" else length)
    async with _serving(limits) as (client, endpoint):
        slow = [await _connect(endpoint) for _ in range(20)]
        senders = [asyncio.create_task(_trickle(writer, opening)) for _, writer in slow]
        try:
            assert await client.request(endpoint, b"legit", timeout=10) == b"tigel"
            # Each slow client is closed by the server while it is still sending.
            closed = await asyncio.wait_for(
                asyncio.gather(*(_until_closed(reader) for reader, _ in slow)), SAFETY_S)
            assert all(not sender.done() or sender.exception() is None for sender in senders)
            assert all(b"200" not in answer for answer in closed)
            assert await client.request(endpoint, b"after", timeout=10) == b"retfa"
        finally:
            for sender in senders:
                sender.cancel()
            for _, writer in slow:
                writer.close()


async def test_connections_beyond_the_limits_are_refused_at_once() -> None:
    limits = ServerLimits(header_timeout=SAFETY_S, max_connections=6, max_connections_per_ip=3)
    async with _serving(limits) as (_, endpoint):
        held = [await _connect(endpoint) for _ in range(3)]  # idle: within the header timeout
        try:
            reader, writer = await _connect(endpoint)  # a fourth from the same address
            answer = await asyncio.wait_for(reader.read(), SAFETY_S)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503")
            # Another address is not held back by the first one's connections.
            others = [await _connect(endpoint, local="127.0.0.2") for _ in range(2)]
            held += others
            reader, writer = others[-1]
            writer.write(HEAD.replace(b"POST", b"GET") + b"\r\n")
            assert (await asyncio.wait_for(reader.readline(), SAFETY_S)).startswith(
                b"HTTP/1.1 404")
            # Six open in all: the next one, from a third address, is refused too.
            held.append(await _connect(endpoint, local="127.0.0.2"))
            reader, writer = await _connect(endpoint, local="127.0.0.3")
            assert (await asyncio.wait_for(reader.read(), SAFETY_S)).startswith(b"HTTP/1.1 503")
            writer.close()
        finally:
            for _, held_writer in held:
                held_writer.close()


def _gateway_node(tmp_path: Path) -> NodeConfig:
    return parse_config({"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []},
                         "agents": [{"name": "shopper", "class": "marketplace:Buyer"}],
                         "interop": {"listen": "127.0.0.1:0"},
                         "gateway": {"listen": "127.0.0.1:0", "agent": "shopper"}},
                        base=tmp_path)


async def test_every_listener_of_a_node_is_limited(tmp_path: Path) -> None:
    """The admin API and the OpenAI gateway (64 per address), envelopes and interop (128)."""
    async with open_node(_gateway_node(tmp_path)) as node:
        assert node.interop is not None and node.gateway_url is not None
        listeners = {"admin": (node.admin_url, 64), "envelopes": (node.runtime.endpoints[0], 128),
                     "interop": (node.interop.url, 128), "gateway": (node.gateway_url, 64)}
        for name, (url, allowed) in listeners.items():
            held = [await _connect(url) for _ in range(allowed)]
            try:
                reader, writer = await _connect(url)
                answer = await asyncio.wait_for(reader.read(), SAFETY_S)
                writer.close()
                assert answer.startswith(b"HTTP/1.1 503"), name
            finally:
                for _, writer in held:
                    writer.close()


async def test_the_openai_gateway_cuts_slow_clients(tmp_path: Path) -> None:
    """The gateway cuts clients trickling a request head, as every listener does.

    The node's own gateway has the default 10 s header timeout; this one, opened by the same
    function on the node's runtime, has 0.5 s.
    """
    settings = GatewaySettings(listen="127.0.0.1:0", agent="shopper")
    async with open_node(_gateway_node(tmp_path)) as node, open_gateway(
            node.runtime, node.market, settings, token=TOKEN, llm=None, models=_no_models,
            limits=ServerLimits(header_timeout=0.5, max_connections=50,
                                max_connections_per_ip=50)) as url:
        slow = [await _connect(url) for _ in range(20)]
        senders = [asyncio.create_task(_trickle(writer, b"GET /v1/models HTTP/1.1\r\nX-Slow: "))
                   for _, writer in slow]
        try:
            closed = await asyncio.wait_for(
                asyncio.gather(*(_until_closed(reader) for reader, _ in slow)), SAFETY_S)
            assert all(b"200" not in answer for answer in closed)
            reader, writer = await _connect(url)
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
            assert (await asyncio.wait_for(reader.readline(), SAFETY_S)).startswith(
                b"HTTP/1.1 200")
            writer.close()
        finally:
            for sender in senders:
                sender.cancel()
            for _, writer in slow:
                writer.close()


async def _no_models() -> list[str]:
    return []
