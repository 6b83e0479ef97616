"""Wall-clock time behind one small interface, so expiry logic can be tested without sleeping."""

from __future__ import annotations

import abc
import time

from typing_extensions import override


class Clock(abc.ABC):
    """Source of wall-clock time (seconds since the Unix epoch)."""

    @abc.abstractmethod
    def now(self) -> float:
        """Return the current time in seconds since the epoch."""


class SystemClock(Clock):
    """The operating system's wall clock."""

    @override
    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    """A clock that moves only when told to; for tests of expiry and skew."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self._now = start

    @override
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (or back, with a negative value)."""
        self._now += seconds

    def __repr__(self) -> str:
        return f"<ManualClock {self._now:.3f}>"
