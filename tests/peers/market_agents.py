"""Agents for the two-operator tests, named in node TOML files (`tests.peers.market_agents:...`).

`SlowForecaster` sells forecasts and takes `work_seconds` per task (time to kill its buyer
mid-task); `UntypedForecaster` is one that states no task model, which no node starts.
`DiesAfterCountersigning` is one that SIGKILLs its own node the first time it has
countersigned and booked a sale, before its answer leaves (a marker file says it died once).
`StandingBuyer` buys `orders` forecasts one after the other, once in its life:
what it has bought is in its storage, so a restarted node does not buy again (what is open
is for the node's recovery to finish).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from aaex_agents import Agent, Context, Credits, on_interval
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.selling import ServiceSeller


class History(BaseModel):
    history: list[float] = Field(min_length=1)


class Forecast(BaseModel):
    forecast: float


class SlowForecaster(ServiceSeller):
    capability = "forecast.demand"
    task_model: ClassVar[type[BaseModel]] = History
    result_model: ClassVar[type[BaseModel]] = Forecast

    def __init__(self, *args: Any, work_seconds: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.work_seconds = work_seconds

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        await ctx.clock.sleep(self.work_seconds)
        history = task["history"]
        return {"forecast": sum(history) / len(history)}


class UntypedForecaster(SlowForecaster):
    """States no task model: a node must refuse to start it."""

    task_model = None


class DiesAfterCountersigning(SlowForecaster):
    def __init__(self, *args: Any, marker: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker = Path(marker)

    async def agreed(self, wire: bytes) -> None:
        await super().agreed(wire)  # the sale is on our books
        if not self.marker.exists():
            self.marker.write_text("died after countersigning\n")
            os.kill(os.getpid(), signal.SIGKILL)  # the Agreed reply never leaves


class StandingBuyer(Agent):
    def __init__(self, *args: Any, orders: int = 1, budget: float = 5.0,
                 deadline: float = 20.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orders, self.deadline = orders, deadline
        self.budget = Credits.parse(budget, "budget")  # decimal credits, as the TOML states
        self._busy = False

    @on_interval(0.5)
    async def buy(self, ctx: Context) -> None:
        placed = int(await ctx.storage.get("placed", 0))
        if self._busy or placed >= self.orders:
            return
        self._busy = True
        await ctx.storage.set("placed", placed + 1)  # before buying: never twice after a crash
        try:
            done = await ctx.delegate("forecast.demand", {"history": [placed, placed + 2]},
                                      budget=self.budget, deadline=self.deadline,
                                      max_latency_ms=10_000)
            ctx.logger.info("bought %s", done.agreement_id[:12],
                            extra={"event": "bought", "agreement_id": done.agreement_id})
        except DelegationFailed as failed:
            ctx.logger.warning("order failed: %s", failed)
        finally:
            self._busy = False


class LateForecaster(SlowForecaster):
    """Sells weekly forecasts it delivers after the latency it promised (`work_seconds`
    beyond its `latency_ms`): its buyer stops waiting, signs not_delivered and bans it."""

    capability = "forecast.weekly"


class Note(BaseModel):
    note: str = Field(min_length=1)


class NoteEcho(ServiceSeller):
    """Sells ``text.echo``: delivers the task's note back, so a test can look for it on the
    wire both ways (tests/test_sealing_nodes.py)."""

    capability = "text.echo"
    task_model: ClassVar[type[BaseModel]] = Note
    result_model: ClassVar[type[BaseModel]] = Note

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        return {"note": task["note"]}
