"""The asyncio <-> trio bridge that py-libp2p runs behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aaex_agents import TransportClosed, UsageError
from aaex_agents.transport.trio_bridge import TrioBridge, sleep_forever


async def _add(a: int, b: int) -> int:
    return a + b


async def _fail() -> None:
    raise ValueError("raised in trio")


@pytest.fixture
async def bridge() -> AsyncIterator[TrioBridge]:
    started = TrioBridge(name="test-trio")
    await started.start()
    try:
        yield started
    finally:
        await started.aclose()


async def test_calls_return_results_and_raise_errors(bridge: TrioBridge) -> None:
    assert await bridge.call(_add, 2, 3) == 5
    with pytest.raises(ValueError, match="raised in trio"):
        await bridge.call(_fail)


async def test_timeouts_and_cancellation_reach_the_trio_side(bridge: TrioBridge) -> None:
    with pytest.raises(TimeoutError):
        await bridge.call(sleep_forever, timeout=0.05)
    pending = asyncio.ensure_future(bridge.call(sleep_forever))
    await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert await bridge.call(_add, 1, 1) == 2  # still serving


async def test_trio_side_can_call_back_into_asyncio(bridge: TrioBridge) -> None:
    loop = asyncio.get_running_loop()

    async def on_asyncio(x: int) -> tuple[int, bool]:
        return x * 10, asyncio.get_running_loop() is loop

    async def from_trio() -> tuple[int, bool]:
        return await bridge.call_asyncio(on_asyncio, 4)

    assert await bridge.call(from_trio) == (40, True)


async def test_open_in_trio_holds_a_context_open(bridge: TrioBridge) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def resource() -> AsyncIterator[int]:
        events.append("enter")
        try:
            yield 7
        finally:
            events.append("exit")

    async with bridge.open_in_trio(resource) as value:
        assert value == 7 and events == ["enter"]
    assert events == ["enter", "exit"]


async def test_open_in_trio_reports_a_failing_enter(bridge: TrioBridge) -> None:
    @asynccontextmanager
    async def broken() -> AsyncIterator[int]:
        raise OSError("port taken")
        yield 0  # pragma: no cover

    with pytest.raises(OSError, match="port taken"):
        async with bridge.open_in_trio(broken):
            pass


async def test_closed_bridge_refuses_calls_and_cannot_restart() -> None:
    bridge = TrioBridge()
    await bridge.start()
    await bridge.aclose()
    await bridge.aclose()  # idempotent
    with pytest.raises(TransportClosed):
        await bridge.call(_add, 1, 2)
    with pytest.raises(UsageError):
        await bridge.start()


async def test_a_libp2p_host_leaves_no_thread_or_listener_behind() -> None:
    import socket
    import threading

    from aaex_agents.transport.libp2p import open_libp2p_host

    before = {t.name for t in threading.enumerate()}
    async with open_libp2p_host() as host:
        port = int(host.addrs[0].split("/tcp/")[1].split("/")[0])
        assert "aaex-trio" in {t.name for t in threading.enumerate()}
    assert {t.name for t in threading.enumerate()} <= before
    with socket.socket() as probe:  # the port is free again: nothing listens on it
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_stopped_libp2p_host_closes_its_connections_so_peers_see_it_leave() -> None:
    import multiaddr
    import trio
    from libp2p.abc import INotifee
    from libp2p.peer.peerinfo import info_from_p2p_addr

    from aaex_agents.transport.libp2p import open_libp2p_host

    class Departures(INotifee):
        """Sets `gone` when the connection to `peer` closes (a notifee of the staying host)."""

        def __init__(self) -> None:
            self.peer: Any = None
            self.gone = trio.Event()

        async def disconnected(self, network: Any, conn: Any) -> None:
            if conn.muxed_conn.peer_id == self.peer:
                self.gone.set()

        async def connected(self, network: Any, conn: Any) -> None: ...
        async def opened_stream(self, network: Any, stream: Any) -> None: ...
        async def closed_stream(self, network: Any, stream: Any) -> None: ...
        async def listen(self, network: Any, multiaddr: Any) -> None: ...
        async def listen_close(self, network: Any, multiaddr: Any) -> None: ...

    departures = Departures()
    async with open_libp2p_host() as staying:
        staying.host.get_network().register_notifee(departures)
        async with open_libp2p_host() as leaving:
            departures.peer = leaving.host.get_id()
            info = info_from_p2p_addr(multiaddr.Multiaddr(staying.addrs[0]))
            await leaving.bridge.call(leaving.host.connect, info, timeout=10)
        # The socket was closed, not left open in this process: the peer sees EOF at once
        # (before the fix it kept the connection until a stream on it timed out).
        await staying.bridge.call(departures.gone.wait, timeout=10)
