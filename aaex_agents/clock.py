"""Wall-clock time and sleeping behind one small interface.

Expiry, deadlines, backoff and refresh periods all read time through a `Clock` and wait
through `Clock.sleep`, so tests drive them with a `ManualClock` instead of waiting real
seconds (httpcore's backends own `sleep` for the same reason).
"""

from __future__ import annotations

import abc
import asyncio
import heapq
import itertools
import time

from typing_extensions import override


class Clock(abc.ABC):
    """Source of wall-clock time (seconds since the Unix epoch)."""

    @abc.abstractmethod
    def now(self) -> float:
        """Return the current time in seconds since the epoch."""

    def now_ms(self) -> int:
        """The current time in whole milliseconds since the epoch (contracts' unit)."""
        return int(self.now() * 1000)

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time (cancellable like `asyncio.sleep`)."""


class SystemClock(Clock):
    """The operating system's wall clock."""

    @override
    def now(self) -> float:
        return time.time()

    @override
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that moves only when told to; for tests of expiry, skew, timers and waiting.

    `sleep(s)` waits until `advance` has moved the clock to its deadline (now + s); a sleep
    of zero or less only yields to the event loop. `advance(s)` moves the clock by exactly
    `s`, once for every sleeper, and wakes each sleeper whose deadline it reached, earliest
    deadline first. A test drives timers as a scheduler would:

        clock = ManualClock()
        ...                                  # start tasks that sleep 1 s and 3 s
        await clock.sleeping(2)              # both are asleep now
        clock.advance(1)                     # wakes the 1 s sleeper only, at start + 1
    """

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed = asyncio.Event()

    @override
    def now(self) -> float:
        return self._now

    @override
    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), wake))
        self._changed.set()
        try:
            await wake
        finally:
            wake.cancel()  # a cancelled sleeper is dropped by `advance` or `sleepers`

    @property
    def sleepers(self) -> int:
        """How many tasks are asleep on this clock now."""
        self._sleepers = [s for s in self._sleepers if not s[2].done()]
        heapq.heapify(self._sleepers)
        return len(self._sleepers)

    @property
    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes; None when nobody sleeps."""
        return self._sleepers[0][0] if self.sleepers else None

    async def sleeping(self, count: int = 1) -> None:
        """Return once at least `count` tasks are asleep on this clock (tests wait on it)."""
        while self.sleepers < count:
            self._changed.clear()
            await self._changed.wait()

    def advance(self, seconds: float) -> None:
        """Move the clock by `seconds` (back, with a negative value) and wake who is due.

        Every sleeper whose deadline is now reached is woken, earliest deadline first (in
        the order they slept, for equal deadlines); each sees the clock at its new time.
        """
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, wake = heapq.heappop(self._sleepers)
            if not wake.done():
                wake.set_result(None)

    def __repr__(self) -> str:
        return f"<ManualClock {self._now:.3f} sleepers={self.sleepers}>"
