"""A forecaster that turns partly dishonest after a while, for the validators' chain test.

`WrongOnAFifth` answers like the honest `SeasonalForecaster` (the last week repeated) until
`lie_after` seconds after it started; from then on every fifth answer it gives is three times
too high. The validators' probes, which they score against held-out data, are the only way
anyone on the market learns it.
"""

from __future__ import annotations

from typing import Any

from aaex_agents import Context
from tests.test_validators import SeasonalForecaster


class WrongOnAFifth(SeasonalForecaster):
    """Fault injection: one answer in five wrong from `lie_after` seconds on."""

    def __init__(self, *args: Any, lie_after: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lie_after = lie_after
        self._since: float | None = None

    async def on_start(self, ctx: Context) -> None:
        await super().on_start(ctx)
        self._since = ctx.clock.now()

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        if self._since is not None and ctx.clock.now() - self._since >= self.lie_after \
                and not self.lying:
            self.lying = True
            ctx.logger.info("from now on every fifth answer is wrong",
                            extra={"event": "lying_from_now"})
        return await super().perform(ctx, task)
