"""An Echo agent in its own OS process, for cross-process tests.

Prints one JSON line {"address", "endpoint"} once listening; exits 0 when stdin closes or on
SIGTERM. Also answers Stats with how many Pings its handler actually saw, so a test can
prove that rejected envelopes never reached it.
"""

from __future__ import annotations

import asyncio
import json

from aaex_agents import Agent, Context, HttpTransport, Message, handler, open_runtime
from aaex_agents.testing import stop_on_stdin_close_or_signal


class Ping(Message, type="tests.ping/1"):
    text: str


class Pong(Message, type="tests.pong/1"):
    text: str


class Boom(Message, type="tests.boom/1"):
    pass


class Stats(Message, type="tests.stats/1"):
    pass


class StatsReply(Message, type="tests.stats_reply/1"):
    pings: int
    booms: int


class Echo(Agent):
    def __init__(self) -> None:
        super().__init__(name="echo")
        self.pings = 0
        self.booms = 0

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        self.pings += 1
        return Pong(text=msg.text)

    @handler
    async def on_boom(self, ctx: Context, msg: Boom) -> None:
        self.booms += 1
        raise RuntimeError("the handler failed on purpose")

    @handler
    async def on_stats(self, ctx: Context, msg: Stats) -> StatsReply:
        return StatsReply(pings=self.pings, booms=self.booms)


async def main() -> None:
    echo = Echo()
    async with stop_on_stdin_close_or_signal() as stop, \
            open_runtime(echo, transports=[HttpTransport()]) as runtime:
        print(json.dumps({"address": echo.address, "endpoint": runtime.endpoints[0]}), flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
