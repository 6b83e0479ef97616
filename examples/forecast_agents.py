"""A demand-forecasting seller a node can host (see examples/node.toml)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from aaex_agents import Context
from marketplace.trade.selling import ServiceSeller


class DemandTask(BaseModel):
    """Observations, oldest first, and how many of the last ones to average."""

    history: list[float] = Field(min_length=1)
    window: int = Field(default=4, ge=1)


class DemandForecast(BaseModel):
    forecast: float
    method: str


class MovingAverageForecaster(ServiceSeller):
    """Sells `forecast.demand`: next period = mean of the last `window` observations."""

    capability = "forecast.demand"
    task_model: ClassVar[type[BaseModel]] = DemandTask
    result_model: ClassVar[type[BaseModel]] = DemandForecast

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        history = [float(x) for x in task.get("history", [])]
        window = history[-int(task.get("window", 4)):] or [0.0]
        return {"forecast": sum(window) / len(window), "method": "moving_average"}
