"""A broken libp2p connection is dropped and its peer dialed again, with backoff.

Real py-libp2p hosts on loopback. Two ways a connection breaks: the peer's host stops and
comes back on the same port and key (py-libp2p on its own then refused to dial it for 60 s
after one failed dial), and the fault of attack 13: the peer resets its streams while our
side's close of the connection was interrupted, so py-libp2p keeps a closed connection in
its table and answers every request with "No valid connections available", never dialing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from aaex_agents import PeerUnreachable, UsageError
from aaex_agents.clock import ManualClock
from aaex_agents.transport import redial
from aaex_agents.transport.libp2p import (
    Libp2pConfig,
    Libp2pHost,
    Libp2pTransport,
    open_libp2p_host,
)
from aaex_agents.transport.redial import RedialBackoff

REQUESTS = 20


async def _reversed(frame: bytes) -> bytes | None:
    return frame[::-1]


@asynccontextmanager
async def _serving(config: Libp2pConfig) -> AsyncIterator[tuple[Libp2pHost, str]]:
    async with open_libp2p_host(config) as host:
        server = Libp2pTransport(host)
        try:
            async with server.serve(_reversed) as endpoint:
                assert endpoint is not None
                yield host, endpoint
        finally:
            await server.aclose()


async def _succeeded(client: Libp2pTransport, endpoint: str) -> int:
    answered = 0
    for n in range(REQUESTS):
        try:
            answered += await client.request(endpoint, b"ping %d" % n, timeout=10) == (
                b"ping %d" % n)[::-1]
        except PeerUnreachable:
            pass
    return answered


async def test_a_restarted_peer_is_dialed_again_once_its_backoff_passed() -> None:
    clock = ManualClock()
    seed = os.urandom(32)
    async with open_libp2p_host(Libp2pConfig(dht=False, clock=clock)) as client_host:
        client = Libp2pTransport(client_host)
        try:
            async with _serving(Libp2pConfig(dht=False, seed=seed)) as (_, endpoint):
                assert await client.request(endpoint, b"abc", timeout=10) == b"cba"
            port = endpoint.split("/tcp/")[1].split("/")[0]
            with pytest.raises(PeerUnreachable, match=r"dialing again in 0\.5 s"):
                await client.request(endpoint, b"abc", timeout=10)  # down: the dial fails
            with pytest.raises(PeerUnreachable, match=r"next is allowed in 0\.5 s"):
                await client.request(endpoint, b"abc", timeout=10)  # no dial: backing off
            restarted = Libp2pConfig(dht=False, seed=seed, listen=(f"/ip4/127.0.0.1/tcp/{port}",))
            async with _serving(restarted) as (_, again):
                assert again == endpoint  # same port, same key
                clock.advance(0.5)
                assert await _succeeded(client, endpoint) == REQUESTS
        finally:
            await client.aclose()


async def test_a_closed_connection_left_in_the_table_is_dropped_and_the_peer_redialed() -> None:
    async with open_libp2p_host(Libp2pConfig(dht=False)) as client_host, \
            _serving(Libp2pConfig(dht=False)) as (server_host, endpoint):
        client = Libp2pTransport(client_host)
        server_id = server_host.host.get_id()
        try:
            assert await client.request(endpoint, b"abc", timeout=10) == b"cba"

            async def interrupt_our_close() -> None:  # fault: a close cancelled half-way
                for connection in client_host.host.get_network().get_connections(server_id):
                    with trio.CancelScope() as scope:
                        scope.cancel()
                        await connection.close()

            async def reset_every_stream() -> None:  # the peer resets what we pooled
                for connection in server_host.host.get_network().get_connections():
                    for stream in list(connection.get_streams()):
                        await stream.reset()

            await client_host.bridge.call(interrupt_our_close)
            await server_host.bridge.call(reset_every_stream)
            assert [c.is_closed for c in
                    client_host.host.get_network().get_connections(server_id)] == [True]

            assert await _succeeded(client, endpoint) == REQUESTS
            live = client_host.host.get_network().get_connections(server_id)
            assert [c.is_closed for c in live] == [False]  # the broken one is gone
        finally:
            await client.aclose()


# -- the backoff on its own ---------------------------------------------------------------------


def test_the_backoff_doubles_per_round_of_dialing_up_to_its_cap() -> None:
    clock = ManualClock()
    backoff = RedialBackoff(clock, first=0.5, most=3.0)
    assert backoff.wait_left("peer") == 0
    assert backoff.failed("peer") == 0.5
    assert backoff.failed("peer") == 0.5  # a concurrent request's dial: the same round
    clock.advance(0.25)
    assert backoff.wait_left("peer") == 0.25
    assert backoff.wait_left("other") == 0
    waits = []
    for _ in range(4):
        clock.advance(backoff.wait_left("peer"))
        waits.append(backoff.failed("peer"))
    assert waits == [1.0, 2.0, 3.0, 3.0]
    backoff.succeeded("peer")
    assert backoff.wait_left("peer") == 0
    assert backoff.failed("peer") == 0.5  # forgotten: it starts over


def test_the_backoff_remembers_a_bounded_number_of_peers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redial, "MAX_PEERS", 3)
    clock = ManualClock()
    backoff = RedialBackoff(clock, first=1.0, most=1.0)
    backoff.failed("old")
    clock.advance(1)  # its wait is over: forgotten first
    for peer in ("a", "b", "c"):
        backoff.failed(peer)
    assert backoff.wait_left("a") == 1 and "peers_backing_off=3" in repr(backoff)
    backoff.failed("d")  # over the bound with every wait running: the oldest goes
    assert backoff.wait_left("a") == 0 and backoff.wait_left("d") == 1
    with pytest.raises(UsageError, match="first <= most"):
        RedialBackoff(clock, first=2.0, most=1.0)
    with pytest.raises(UsageError, match="redial_backoff"):
        Libp2pConfig(redial_backoff=0)
