"""One conformance suite, run against every transport (libp2p joins with discovery)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import aiohttp
import pytest

from aaex_agents import (
    HttpTransport,
    MemoryNetwork,
    PeerRejected,
    PeerUnreachable,
    RequestTimeout,
    Transport,
    TransportClosed,
    TransportError,
    WrongTarget,
)
from aaex_agents.transport.libp2p import Libp2pConfig, Libp2pTransport, open_libp2p_host

TransportPair = tuple[Transport, Transport]
PairFactory = Callable[[], AbstractAsyncContextManager[TransportPair]]


@asynccontextmanager
async def memory_pair() -> AsyncIterator[TransportPair]:
    network = MemoryNetwork()
    yield network.transport("server"), network.transport("client")


@asynccontextmanager
async def http_pair(limit: int = 64 * 1024) -> AsyncIterator[TransportPair]:
    server = HttpTransport(max_frame_bytes=limit, shutdown_timeout=0.2)
    client = HttpTransport()
    try:
        yield server, client
    finally:
        await client.aclose()
        await server.aclose()


@asynccontextmanager
async def libp2p_pair(limit: int = 64 * 1024) -> AsyncIterator[TransportPair]:
    config = Libp2pConfig(dht=False, max_frame_bytes=limit)
    async with open_libp2p_host(config) as first, open_libp2p_host(config) as second:
        server, client = Libp2pTransport(first), Libp2pTransport(second)
        try:
            yield server, client
        finally:
            await client.aclose()
            await server.aclose()


@pytest.fixture(params=[memory_pair, http_pair, libp2p_pair], ids=["memory", "http", "libp2p"])
def make_pair(request: pytest.FixtureRequest) -> PairFactory:
    factory: PairFactory = request.param
    return factory


async def _echo_reversed(frame: bytes) -> bytes | None:
    if frame == b"none":
        return None
    if frame == b"reject":
        raise WrongTarget("not hosted here")
    if frame == b"slow":
        await asyncio.sleep(30)
    return frame[::-1]


async def test_request_returns_the_handlers_reply_byte_exact(make_pair: PairFactory) -> None:
    every_byte = bytes(range(256)) * 4
    async with make_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None and client.handles(endpoint)
        assert await client.request(endpoint, every_byte, timeout=5) == every_byte[::-1]
        assert await client.request(endpoint, b"none", timeout=5) is None


async def test_rejection_reaches_the_sender_with_its_reason(make_pair: PairFactory) -> None:
    async with make_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
        with pytest.raises(PeerRejected) as caught:
            await client.request(endpoint, b"reject", timeout=5)
        assert caught.value.reason == "wrong_target"
        assert "not hosted here" in caught.value.detail


async def test_slow_peer_times_out_and_the_transport_stays_usable(make_pair: PairFactory) -> None:
    async with make_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
        with pytest.raises(RequestTimeout):
            await client.request(endpoint, b"slow", timeout=0.1)
        assert await client.request(endpoint, b"ab", timeout=5) == b"ba"


async def test_many_concurrent_requests_each_get_their_own_reply(make_pair: PairFactory) -> None:
    async with make_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
        frames = [f"frame-{i}".encode() for i in range(200)]
        replies = await asyncio.gather(*(client.request(endpoint, f, timeout=10) for f in frames))
        assert replies == [f[::-1] for f in frames]


async def test_endpoint_is_unreachable_once_serving_stops(make_pair: PairFactory) -> None:
    async with make_pair() as (server, client):
        async with server.serve(_echo_reversed) as endpoint:
            assert endpoint is not None
            assert await client.request(endpoint, b"x", timeout=5) == b"x"
        with pytest.raises(PeerUnreachable):
            await client.request(endpoint, b"x", timeout=5)


async def test_libp2p_dials_a_peer_restarted_on_a_new_port_at_once() -> None:
    """Its old address failed a moment ago, which starts the peer's redial backoff; a new
    address (from the peer's re-published record) replaces the old one and is dialed at
    once (py-libp2p dials only the first address it knows)."""
    restarting = Libp2pConfig(dht=False, seed=bytes(range(32)))
    async with open_libp2p_host(Libp2pConfig(dht=False)) as caller:
        client = Libp2pTransport(caller)
        async with open_libp2p_host(restarting) as first, \
                Libp2pTransport(first).serve(_echo_reversed) as old:
            assert old is not None
            assert await client.request(old, b"ab", timeout=5) == b"ba"
        with pytest.raises(PeerUnreachable):
            await client.request(old, b"ab", timeout=5)
        async with open_libp2p_host(restarting) as second, \
                Libp2pTransport(second).serve(_echo_reversed) as new:
            assert new is not None and new != old
            assert await client.request(new, b"ab", timeout=5) == b"ba"
        await client.aclose()


async def test_http_refuses_oversize_frames_before_reading_them() -> None:
    async with http_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
        with pytest.raises(PeerRejected) as caught:
            await client.request(endpoint, b"x" * (64 * 1024 + 1), timeout=5)
        assert caught.value.reason == "oversize"
        assert await client.request(endpoint, b"x" * (64 * 1024), timeout=5) == b"x" * 65536


async def test_http_answers_other_paths_with_404_and_handler_bugs_with_500() -> None:
    async def broken(frame: bytes) -> bytes | None:
        raise KeyError("a bug in the receiver")

    async with http_pair() as (server, client), server.serve(broken) as endpoint:
        assert endpoint is not None
        async with aiohttp.ClientSession() as session:
            async with session.get(endpoint) as response:
                assert response.status == 404
        with pytest.raises(TransportError, match="HTTP 500"):
            await client.request(endpoint, b"x", timeout=5)


async def test_http_closed_transport_cannot_send() -> None:
    client = HttpTransport()
    await client.aclose()
    with pytest.raises(TransportClosed):
        await client.request("http://127.0.0.1:9/aaex/v1/envelope", b"x", timeout=1)


async def test_http_nothing_listening_is_unreachable() -> None:
    async with http_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
    # the server has stopped: its port is closed
    client = HttpTransport()
    try:
        with pytest.raises(PeerUnreachable):
            await client.request(endpoint, b"x", timeout=5)
    finally:
        await client.aclose()


async def test_libp2p_refuses_oversize_frames() -> None:
    async with libp2p_pair() as (server, client), server.serve(_echo_reversed) as endpoint:
        assert endpoint is not None
        with pytest.raises(PeerRejected) as caught:
            await client.request(endpoint, b"x" * (64 * 1024 + 1), timeout=5)
        assert caught.value.reason == "oversize"
        assert await client.request(endpoint, b"ok", timeout=5) == b"ko"


# --- whole frames up to the limit -------------------------------------------------------------

MIB = 1024 * 1024


async def _digest(frame: bytes) -> bytes | None:
    """Answers with the length and SHA-256 of what arrived: a short reply for any frame."""
    return len(frame).to_bytes(4, "big") + hashlib.sha256(frame).digest()


@pytest.mark.parametrize("pair", [http_pair, libp2p_pair], ids=["http", "libp2p"])
async def test_frames_up_to_the_limit_arrive_whole(
        pair: Callable[[int], AbstractAsyncContextManager[TransportPair]]) -> None:
    # A large body reaches the server in several network reads; the handler must see all
    # of it (HTTP once passed on whatever one read returned: "incomplete input").
    async with pair(MIB) as (server, client), server.serve(_digest) as endpoint:
        assert endpoint is not None
        for size in (1_000, 200_000, 900_000, MIB - 1, MIB):
            frame = bytes(range(256)) * (size // 256) + b"\x07" * (size % 256)
            reply = await client.request(endpoint, frame, timeout=30)
            assert reply == size.to_bytes(4, "big") + hashlib.sha256(frame).digest(), size
        with pytest.raises(PeerRejected) as caught:
            await client.request(endpoint, b"x" * (MIB + 1), timeout=30)
        assert caught.value.reason == "oversize"
        assert await client.request(endpoint, b"after", timeout=30) == await _digest(b"after")


async def test_http_refuses_an_oversize_chunked_body_without_a_length() -> None:
    # No Content-Length to refuse early: the server reads limit + 1 bytes, then stops.
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(65):
            yield b"x" * 1024

    async with http_pair() as (server, _), server.serve(_digest) as endpoint:
        assert endpoint is not None
        async with aiohttp.ClientSession() as session:
            async with session.post(endpoint, data=chunks()) as response:
                assert response.status == 413
                assert (await response.json())["reason"] == "oversize"
            async with session.post(endpoint, data=_one_chunk(b"y" * 64 * 1024)) as response:
                assert response.status == 200
                assert await response.read() == await _digest(b"y" * 64 * 1024)


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data
