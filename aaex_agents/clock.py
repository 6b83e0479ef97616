"""Wall-clock time and sleeping behind one small interface.

Expiry, deadlines, backoff and refresh periods all read time through a `Clock` and wait
through `Clock.sleep`, so tests drive them with a `ManualClock` instead of waiting real
seconds (httpcore's backends own `sleep` for the same reason).
"""

from __future__ import annotations

import abc
import asyncio
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
    """A clock that moves only when told to; for tests of expiry, skew and waiting.

    `sleep` does not wait: it moves the clock forward by the time asked and yields once to
    the event loop, so code that backs off or polls runs at once in tests.
    """

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start

    @override
    def now(self) -> float:
        return self._now

    @override
    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, with a negative value)."""
        self._now += seconds

    def __repr__(self) -> str:
        return f"<ManualClock {self._now:.3f}>"
