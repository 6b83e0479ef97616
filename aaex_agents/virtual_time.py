"""Virtual time: an asyncio event loop whose clock jumps to the next timer when all wait.

A simulation (or a test of timeouts, backoff and expiry) runs the real code on this loop
and gives every layer the loop's `VirtualClock`, which is a `Clock` like any other: an hour
of timers passes in as long as the work between them takes, and nothing under test knows.

    async def main() -> None:
        clock = virtual_clock()                # the running loop's Clock
        await clock.sleep(3600)                # returns at once, an hour later
    run_virtual(main())

The rules (each is what the standard technique does; Twisted's `Clock` and trio's
`MockClock(autojump_threshold=0)` behave the same way):

- Time moves only when nothing is runnable: while any callback is ready, the loop polls
  without waiting and the clock stands still. When every task waits, the clock jumps to
  the earliest timer (``call_later``, `asyncio.sleep`, `asyncio.timeout`, `wait_for`), so
  timers fire in deadline order, each seeing the clock at its own deadline.
- Work handed to threads with `run_in_executor` (SQLite ledgers, `asyncio.to_thread`) is
  waited for in real time, and the clock stands still meanwhile: it takes no virtual time,
  and no timer fires early because a thread was slow. Other threads that call back into the
  loop (``call_soon_threadsafe``) are not tracked: time may jump before they do.
- With ``inline_executors=True`` that work runs on the loop's own thread instead, at the
  call, and the future comes back done: no thread is started, the run is deterministic, and
  thousands of executors (one per SQLite ledger) cost nothing while idle. Only for work that
  may run on the loop's thread (SQLite connections opened with ``check_same_thread=False``,
  as the ledger and agent storage open theirs) and is short: the loop waits for it.
- Real I/O is refused: waiting on a socket or a pipe would mix real and virtual time, so
  registering any file descriptor with the loop (a connection, a server, a subprocess pipe)
  raises `UsageError`. The in-memory transport is what a virtual-time program talks over.
- With no timer, nothing runnable and no thread at work, the loop waits as a real one does
  (a deadlock hangs; a signal still wakes it).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple

from typing_extensions import override

from .clock import Clock
from .errors import UsageError

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_START = 1_750_000_000.0
"""Epoch seconds a virtual clock reads when its loop starts (a fixed date, for replays)."""

_THREAD_POLL_S = 1.0
"""Longest real wait in one poll while executor work is in flight (signals are seen)."""
_DRAIN_EVERY = 64
"""Loop iterations between two polls of the self-pipe when no thread is at work."""


class _VirtualSelector(selectors.BaseSelector):
    """A selector that polls the real one without waiting, and advances virtual time instead.

    Only the loop's own self-pipe (registered while the loop is built) may be registered:
    it is how executor threads and signals wake the loop.
    """

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop
        self.sealed = False
        self._polls = 0

    @override
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if self.sealed:
            raise UsageError(f"the virtual-time loop cannot wait on real I/O ({fileobj!r}); "
                             "talk over the in-memory transport (aaex_agents.testing."
                             "MemoryNetwork), or run this on a real event loop")
        return self._real.register(fileobj, events, data)

    @override
    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    @override
    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    @override
    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if loop.threads_at_work and timeout != 0:
            # Nothing else to run: wait (in real time) for a thread's result, which comes
            # through the self-pipe; the clock stands still.
            return self._real.select(_THREAD_POLL_S)
        # The only descriptor is the self-pipe; what threads and signals schedule through it
        # is already in the loop's ready queue, so it is drained every so often, not on
        # every iteration (a system call each would cost more than most callbacks).
        self._polls += 1
        ready = self._real.select(0) if self._polls % _DRAIN_EVERY == 0 else []
        if ready or timeout == 0:
            return ready
        if timeout is None:
            return self._real.select(None)  # no timer at all: wait as a real loop would
        loop.advance(timeout)  # nothing runnable: jump to the earliest timer
        return []

    @override
    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.get_key(fileobj)

    @override
    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    @override
    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time (see the module docstring for the rules).

    Args:
        start: epoch seconds its `clock` reads at loop time 0.
        inline_executors: run `run_in_executor` work on the loop's thread, at the call.
    """

    def __init__(self, *, start: float = DEFAULT_START, inline_executors: bool = False) -> None:
        selector = _VirtualSelector(self)
        self.inline_executors = inline_executors
        self._now = 0.0
        self.threads_at_work = 0
        """Executor calls whose result has not come back yet (the clock waits for them)."""
        self.jumps = 0
        """How many times the clock jumped to a timer."""
        super().__init__(selector)
        selector.sealed = True  # the self-pipe is registered; nothing else may be
        self.clock = VirtualClock(self, start)

    @override
    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (the selector calls this when all wait)."""
        if seconds > 0:
            self._now += seconds
            self.jumps += 1

    @override
    def run_in_executor(self, executor: Executor | None, func: Callable[[*Ts], T],
                        *args: *Ts) -> asyncio.Future[T]:
        if self.inline_executors:
            done: asyncio.Future[T] = self.create_future()
            try:
                done.set_result(func(*args))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it from the future
                done.set_exception(exc)
            return done
        future = super().run_in_executor(executor, func, *args)
        self.threads_at_work += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _: asyncio.Future[Any]) -> None:
        self.threads_at_work -= 1

    def __repr__(self) -> str:
        return (f"<VirtualTimeLoop t={self._now:.3f} jumps={self.jumps} "
                f"threads_at_work={self.threads_at_work}>")


class VirtualClock(Clock):
    """The `Clock` of a `VirtualTimeLoop`: epoch seconds that move with the loop's time.

    `sleep` is `asyncio.sleep` on that loop, so sleeping on the clock and timeouts taken
    with `asyncio.timeout` agree.
    """

    def __init__(self, loop: VirtualTimeLoop, start: float = DEFAULT_START) -> None:
        self._loop = loop
        self.start = start

    @override
    def now(self) -> float:
        return self.start + self._loop.time()

    @override
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    @property
    def elapsed(self) -> float:
        """Virtual seconds since the loop started."""
        return self._loop.time()

    def __repr__(self) -> str:
        return f"<VirtualClock {self.now():.3f} elapsed={self.elapsed:.3f}>"


def virtual_clock() -> VirtualClock:
    """The clock of the running `VirtualTimeLoop`.

    Raises:
        UsageError: the running loop is not a `VirtualTimeLoop` (use `run_virtual`).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeLoop):
        raise UsageError("virtual_clock() needs a VirtualTimeLoop; run the program with "
                         "aaex_agents.virtual_time.run_virtual(main())")
    return loop.clock


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = DEFAULT_START,
                inline_executors: bool = False) -> T:
    """Run `main` to completion on a fresh `VirtualTimeLoop` (like `asyncio.run`)."""
    def factory() -> VirtualTimeLoop:
        return VirtualTimeLoop(start=start, inline_executors=inline_executors)

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


__all__ = ["DEFAULT_START", "VirtualClock", "VirtualTimeLoop", "run_virtual", "virtual_clock"]
