"""A demand-forecasting seller a node can host (see examples/node.toml)."""

from __future__ import annotations

from typing import Any

from aaex_agents import Context
from marketplace.trade.selling import ServiceSeller


class MovingAverageForecaster(ServiceSeller):
    """Sells `forecast.demand`: next period = mean of the last `window` observations."""

    capability = "forecast.demand"

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        history = [float(x) for x in task.get("history", [])]
        window = history[-int(task.get("window", 4)):] or [0.0]
        return {"forecast": sum(window) / len(window), "method": "moving_average"}
