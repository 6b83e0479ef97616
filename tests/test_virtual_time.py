"""The virtual-time loop: the clock jumps to the next timer only when every task waits."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from aaex_agents import (
    Agent,
    Context,
    MemoryNetwork,
    Message,
    UsageError,
    on_interval,
    open_runtime,
)
from aaex_agents.errors import RequestTimeout
from aaex_agents.virtual_time import DEFAULT_START, VirtualTimeLoop, run_virtual, virtual_clock


def test_timers_fire_in_deadline_order_each_at_its_own_time() -> None:
    async def main() -> list[tuple[str, float]]:
        clock = virtual_clock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.elapsed))

        async with asyncio.TaskGroup() as group:
            for name, seconds in (("hour", 3600), ("second", 1), ("minute", 60), ("also", 1)):
                group.create_task(sleeper(name, seconds))
        assert clock.now() == DEFAULT_START + 3600
        return woke

    assert run_virtual(main()) == [("second", 1), ("also", 1), ("minute", 60), ("hour", 3600)]


def test_time_stands_still_while_anything_is_runnable() -> None:
    async def main() -> tuple[set[float], float]:
        clock = virtual_clock()
        seen: set[float] = set()

        async def busy() -> None:
            for _ in range(1000):  # always runnable: yields, never waits on a timer
                seen.add(clock.elapsed)
                await asyncio.sleep(0)

        async with asyncio.TaskGroup() as group:
            sleeper = group.create_task(clock.sleep(0.001))
            group.create_task(busy())
            await asyncio.sleep(0)
            assert not sleeper.done()
        return seen, clock.elapsed

    seen, end = run_virtual(main())
    assert seen == {0.0} and end == 0.001


def test_timeouts_and_wait_for_expire_at_their_virtual_deadline() -> None:
    async def main() -> list[float]:
        clock = virtual_clock()
        expired = []
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), timeout=5)
        expired.append(clock.elapsed)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.5):
                await asyncio.Event().wait()
        expired.append(clock.elapsed)
        # A result that comes before the deadline wins, and the clock stops at it.
        assert await asyncio.wait_for(clock.sleep(1), timeout=10) is None
        expired.append(clock.elapsed)
        return expired

    assert run_virtual(main()) == [5.0, 7.5, 8.5]


def test_executor_work_takes_no_virtual_time_and_no_timer_fires_during_it() -> None:
    release = threading.Event()

    def slow_work() -> str:
        release.wait(timeout=10)  # real work the loop must wait for
        return "done"

    async def main() -> tuple[str, float, bool]:
        loop = asyncio.get_running_loop()
        clock = virtual_clock()
        sleeper = asyncio.ensure_future(clock.sleep(100))
        work = loop.run_in_executor(None, slow_work)
        await asyncio.sleep(0)
        # Only the thread is at work: a real loop would now sit in select; this one must
        # not jump 100 s ahead (firing the sleeper) while the thread runs.
        threading.Timer(0.05, release.set).start()
        result = await work
        at, sleeper_done = clock.elapsed, sleeper.done()
        await sleeper
        return result, at, sleeper_done

    assert run_virtual(main()) == ("done", 0.0, False)


def test_inline_executor_work_runs_on_the_loop_thread_and_takes_no_virtual_time() -> None:
    def work(fail: bool) -> int:
        if fail:
            raise ValueError("bad row")
        return threading.get_ident()

    async def main() -> tuple[bool, float, int]:
        loop = asyncio.get_running_loop()
        clock = virtual_clock()
        sleeper = asyncio.ensure_future(clock.sleep(5))
        ran_on = await loop.run_in_executor(None, work, False)
        with pytest.raises(ValueError, match="bad row"):
            await asyncio.to_thread(work, True)
        at = clock.elapsed
        await sleeper
        return ran_on == threading.get_ident(), at, threading.active_count()

    before = threading.active_count()
    same_thread, at, threads = run_virtual(main(), inline_executors=True)
    assert (same_thread, at, threads) == (True, 0.0, before)


def test_real_io_is_refused() -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        left.setblocking(False)
        try:
            with pytest.raises(UsageError, match="cannot wait on real I/O"):
                async with asyncio.timeout(1):  # without the refusal: a TimeoutError
                    await asyncio.get_running_loop().sock_recv(left, 1)
        finally:
            left.close()
            right.close()

    run_virtual(main())


def test_virtual_clock_needs_the_virtual_loop() -> None:
    async def main() -> None:
        with pytest.raises(UsageError, match="VirtualTimeLoop"):
            virtual_clock()

    asyncio.run(main())


class Hello(Message, type="test.virtual_hello/1"):
    pass


class Ticker(Agent):
    ticks: list[float]

    @on_interval(60)
    async def tick(self, ctx: Context) -> None:
        self.ticks.append(ctx.clock.now())


def test_a_runtime_runs_an_hour_of_intervals_and_timeouts_on_the_virtual_clock() -> None:
    """The runtime and the memory transport take the loop's clock like any other Clock."""
    async def never(endpoint: str, frame: bytes, deliver: object) -> None:
        await asyncio.Event().wait()  # a route that loses every frame

    async def main() -> tuple[list[float], float]:
        clock = virtual_clock()
        ticker, other = Ticker(), Ticker()
        ticker.ticks = []
        network = MemoryNetwork(route=never)  # type: ignore[arg-type]
        async with open_runtime(ticker, transports=[network.transport("t")], clock=clock) as rt:
            await clock.sleep(3600)
            ctx = rt.context(ticker)
            before = clock.elapsed
            rt.directory.add(other.address, "memory://nowhere")  # type: ignore[attr-defined]
            with pytest.raises(RequestTimeout):
                await ctx.send(other.address, Hello(), timeout=30)
            return [t - DEFAULT_START for t in ticker.ticks], clock.elapsed - before

    ticks, waited = run_virtual(main())
    assert ticks == [60.0 * n for n in range(1, 61)]
    assert waited == 30.0


def test_the_loop_reports_its_state() -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(asyncio.sleep(2))
        assert repr(loop) == "<VirtualTimeLoop t=2.000 jumps=1 threads_at_work=0>"
        assert repr(loop.clock).startswith(f"<VirtualClock {DEFAULT_START + 2:.3f}")
    finally:
        loop.close()
