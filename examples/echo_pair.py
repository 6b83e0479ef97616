"""Two agents in two OS processes, talking over HTTP on loopback with signed envelopes.

    python examples/echo_pair.py

The parent starts an Echo agent in a child process, asks it a few times, shows that a
tampered and a replayed envelope are refused, and stops the child cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aaex_agents import (
    Agent,
    Context,
    HttpTransport,
    Message,
    PeerRejected,
    StaticDirectory,
    handler,
    open_runtime,
)
from aaex_agents.testing import stop_on_stdin_close_or_signal


class Ping(Message, type="demo.ping/1"):
    """Asks the echo agent to repeat a text."""

    text: str
    """What to echo."""


class Pong(Message, type="demo.pong/1"):
    """The echo agent's answer."""

    text: str
    """The text it was sent."""


class Echo(Agent):
    """Answers every Ping with a Pong carrying the same text."""

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text=msg.text)


class Caller(Agent):
    """Has no handlers; the parent drives it through its context."""


async def serve_echo() -> None:
    """Child process: host Echo until SIGTERM or stdin closes."""
    echo = Echo(name="echo")
    async with stop_on_stdin_close_or_signal() as stop, \
            open_runtime(echo, transports=[HttpTransport()]) as runtime:
        print(json.dumps({"address": echo.address, "endpoint": runtime.endpoints[0]}), flush=True)
        await stop.wait()


async def run_pair() -> int:
    """Parent process: start the child, talk to it, stop it."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    assert child.stdout is not None and child.stdin is not None  # noqa: S101 - PIPE given
    line = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    peer = json.loads(line)
    print(f"echo agent  {peer['address']}\n  listening {peer['endpoint']}")
    directory = StaticDirectory({peer["address"]: [peer["endpoint"]]})
    caller = Caller(name="caller")
    transport = HttpTransport()
    async with open_runtime(caller, transports=[transport], directory=directory) as runtime:
        ctx = runtime.context(caller)
        print(f"caller      {caller.address}\n")
        for text in ("hello", "signed", "verified"):
            started = time.perf_counter()
            reply = await ctx.ask(peer["address"], Ping(text=text), reply_type=Pong, timeout=5)
            took = (time.perf_counter() - started) * 1000
            print(f"  ask Ping({text!r:>10}) -> Pong({reply.text!r:>10})  {took:6.2f} ms")
        started = time.perf_counter()
        rounds = 200
        for n in range(rounds):
            await ctx.ask(peer["address"], Ping(text=str(n)), reply_type=Pong, timeout=5)
        per_second = rounds / (time.perf_counter() - started)
        print(f"\n  {rounds} sequential signed round trips: {per_second:,.0f}/s")

        # What a receiver refuses: the same signed frame twice, and a frame with one bit flipped.
        frame = caller_frame(caller, peer["address"])
        await transport.request(peer["endpoint"], frame, timeout=5)
        for label, bad in (("replayed", frame), ("tampered", flip_bit(frame))):
            try:
                await transport.request(peer["endpoint"], bad, timeout=5)
                print(f"  {label:>9} envelope: ACCEPTED (this is a bug)")
                return 1
            except PeerRejected as exc:
                print(f"  {label:>9} envelope: refused, reason {exc.reason!r}")
    child.stdin.close()
    code = await asyncio.wait_for(child.wait(), timeout=10)
    print(f"\necho process exited with {code}")
    return code


def caller_frame(caller: Caller, target: str) -> bytes:
    """One real signed frame from the caller, built by hand to show the receiver's checks."""
    from aaex_agents.envelope import seal

    return seal(caller.identity, target=target, message=Ping(text="once"), now=time.time(),
                ttl=30)[1]


def flip_bit(frame: bytes) -> bytes:
    """The frame with one bit of its payload flipped (the payload ends just before the
    64-byte signature and its 2-byte header)."""
    tampered = bytearray(frame)
    tampered[-64 - 2 - 3] ^= 0x01
    return bytes(tampered)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="run the echo agent (child role)")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_echo())
        return 0
    return asyncio.run(run_pair())


if __name__ == "__main__":
    sys.exit(main())
