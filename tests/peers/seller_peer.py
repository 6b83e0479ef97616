"""A negotiating seller in its own OS process (HTTP on 127.0.0.1), for market tests.

    python -m tests.peers.seller_peer --cost 2.0 --exponent 4 [--latency 400] [--work-seconds 1]

Prints one JSON line {"address", "endpoint"} once listening, and {"task_started": ...} when it
starts a task; exits 0 when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from aaex_agents import Context, Credits, HttpTransport, Identity, open_runtime
from aaex_agents.testing import stop_on_stdin_close_or_signal
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import SellerStrategy

WORK_SECONDS = 0.0


class History(BaseModel):
    history: list[float] = Field(min_length=1)


class Forecast(BaseModel):
    forecast: list[float]


class ForecastSeller(ServiceSeller):
    capability = "forecast.demand"
    task_model: ClassVar[type[BaseModel]] = History
    result_model: ClassVar[type[BaseModel]] = Forecast

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        print(json.dumps({"task_started": task}), flush=True)
        await ctx.clock.sleep(WORK_SECONDS)
        return {"forecast": [sum(task.get("history", [])) / max(1, len(task.get("history", [])))]}


async def main(args: argparse.Namespace) -> None:
    global WORK_SECONDS
    WORK_SECONDS = args.work_seconds
    identity = Identity.generate()
    seller = ForecastSeller(identity, name=f"seller-e{args.exponent}",
                            strategy=SellerStrategy(cost=Credits.parse(args.cost, "--cost"),
                                                    exponent=args.exponent,
                                                    latency_ms=args.latency),
                            countersign=seller_countersigner(identity))
    async with stop_on_stdin_close_or_signal() as stop, \
            open_runtime(seller, transports=[HttpTransport()]) as runtime:
        print(json.dumps({"address": seller.address, "endpoint": runtime.endpoints[0]}),
              flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cost", required=True, help="decimal credits")
    parser.add_argument("--exponent", type=float, required=True)
    parser.add_argument("--latency", type=float, default=400.0)
    parser.add_argument("--work-seconds", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
