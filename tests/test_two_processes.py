"""Two agents in two OS processes over HTTP on 127.0.0.1: the SDK's promise end to end."""

from __future__ import annotations

import asyncio
import time

import pytest

from aaex_agents import (
    Agent,
    HttpTransport,
    PeerRejected,
    RemoteHandlerError,
    StaticDirectory,
    open_runtime,
)
from aaex_agents.envelope import seal
from aaex_agents.identity import Identity
from tests.conftest import PeerProcess
from tests.peers.echo_peer import Boom, Ping, Pong, Stats, StatsReply


class Caller(Agent):
    pass


async def test_ask_across_processes_returns_verified_reply(echo_process: PeerProcess) -> None:
    caller = Caller()
    directory = StaticDirectory({echo_process.address: [echo_process.endpoint]})
    async with open_runtime(caller, transports=[HttpTransport()], directory=directory) as runtime:
        reply = await runtime.context(caller).ask(echo_process.address, Ping(text="hi"), timeout=5)
        assert reply == Pong(text="hi")
        assert runtime.metrics.sent == 1


async def test_tampered_envelopes_are_refused_and_the_peer_keeps_serving(
        echo_process: PeerProcess) -> None:
    caller = Caller()
    directory = StaticDirectory({echo_process.address: [echo_process.endpoint]})
    transport = HttpTransport()
    async with open_runtime(caller, transports=[transport], directory=directory) as runtime:
        ctx = runtime.context(caller)
        good = seal(caller.identity, target=echo_process.address, message=Ping(text="once"),
                    now=time.time(), ttl=30)[1]
        assert await transport.request(echo_process.endpoint, good, timeout=5) is not None

        flipped = bytearray(good)
        flipped[-64 - 2 - 3] ^= 0x01  # inside the payload: the signature no longer matches
        stranger = Identity.generate().address
        cases = {
            "replayed": good,
            "bad_signature": bytes(flipped),
            "malformed": good[: len(good) // 2],
            "expired": seal(caller.identity, target=echo_process.address,
                            message=Ping(text="old"), now=time.time() - 3600, ttl=30)[1],
            "wrong_target": seal(caller.identity, target=stranger, message=Ping(text="x"),
                                 now=time.time(), ttl=30)[1],
        }
        for reason, frame in cases.items():
            with pytest.raises(PeerRejected) as caught:
                await transport.request(echo_process.endpoint, frame, timeout=5)
            assert caught.value.reason == reason

        with pytest.raises(RemoteHandlerError) as failed:
            await ctx.ask(echo_process.address, Boom(), timeout=5)
        assert failed.value.code == "handler_failed"
        assert "RuntimeError" in failed.value.detail
        assert "on purpose" not in failed.value.detail  # exception text stays on the peer

        assert await ctx.ask(echo_process.address, Ping(text="still here"), timeout=5) == \
            Pong(text="still here")
        stats = await ctx.ask(echo_process.address, Stats(), reply_type=StatsReply, timeout=5)
        assert stats == StatsReply(pings=2, booms=1)  # only the two genuine pings reached it


async def test_peer_process_exits_cleanly(echo_process: PeerProcess) -> None:
    assert echo_process.process.stdin is not None
    echo_process.process.stdin.close()
    assert await echo_process.process.wait() == 0


async def test_peer_process_exits_on_sigterm_while_stdin_stays_open(
        echo_process: PeerProcess) -> None:
    import signal

    echo_process.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(echo_process.process.wait(), timeout=10) == 0
