"""The manual clock moves once for all sleepers, and the runtime's timers sleep on it."""

from __future__ import annotations

import asyncio

import pytest

from aaex_agents import Agent, Context, on_interval, open_runtime
from aaex_agents.testing import ManualClock

START = 1_750_000_000.0


async def test_two_concurrent_sleepers_wake_at_their_own_virtual_times() -> None:
    """Only sleep, advance and now: the clock moves by exactly what is advanced."""
    clock = ManualClock(START)
    woke: list[tuple[str, float]] = []

    async def timer(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now() - START))

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        group.create_task(timer("three", 3))
        group.create_task(timer("one", 1))
        await settle()
        assert (woke, clock.now()) == ([], START)  # sleeping does not move the clock
        clock.advance(0.5)
        await settle()
        assert woke == []
        clock.advance(0.5)
        await settle()
        assert woke == [("one", 1.0)]
        clock.advance(2)
    assert woke == [("one", 1.0), ("three", 3.0)]
    assert clock.now() == START + 3


async def test_sleepers_are_counted_and_waited_for() -> None:
    clock = ManualClock(START)
    async with asyncio.TaskGroup() as group:
        group.create_task(clock.sleep(3))
        group.create_task(clock.sleep(1))
        await asyncio.wait_for(clock.sleeping(2), timeout=5)
        assert (clock.sleepers, clock.next_deadline) == (2, START + 1)
        clock.advance(3)
    assert (clock.sleepers, clock.next_deadline) == (0, None)


async def test_one_advance_wakes_every_due_sleeper_in_deadline_order() -> None:
    clock = ManualClock(START)
    order: list[str] = []

    async def timer(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append(name)

    async with asyncio.TaskGroup() as group:
        for name, seconds in (("c", 3), ("a", 1), ("late", 9), ("b", 2)):
            group.create_task(timer(name, seconds))
        await asyncio.wait_for(clock.sleeping(4), timeout=5)
        clock.advance(5)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == ["a", "b", "c"]
        assert clock.sleepers == 1
        clock.advance(4)
    assert order == ["a", "b", "c", "late"]


async def test_a_cancelled_sleeper_is_forgotten() -> None:
    clock = ManualClock(START)
    sleeper = asyncio.create_task(clock.sleep(10))
    await asyncio.wait_for(clock.sleeping(1), timeout=5)
    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper
    assert clock.sleepers == 0
    assert clock.next_deadline is None
    clock.advance(10)  # nothing to wake, nothing raised


async def test_interval_agents_fire_only_when_the_clock_is_advanced() -> None:
    fired: list[tuple[str, float]] = []

    class Ticker(Agent):
        def __init__(self, name: str) -> None:
            super().__init__(name=name)

        @on_interval(1)
        async def every_second(self, ctx: Context) -> None:
            fired.append((self.name, ctx.clock.now() - START))

    class Slow(Agent):
        @on_interval(3)
        async def every_three(self, ctx: Context) -> None:
            fired.append(("slow", ctx.clock.now() - START))

    clock = ManualClock(START)
    async with open_runtime([Ticker("fast"), Slow()], clock=clock):
        await asyncio.wait_for(clock.sleeping(2), timeout=5)
        await asyncio.sleep(0.05)  # real time passes; the timers do not fire
        assert fired == []
        for _ in range(3):
            clock.advance(1)
            await asyncio.wait_for(clock.sleeping(2), timeout=5)  # each run sleeps again
    # At 3 s both are due: woken in the order they went to sleep for that deadline.
    assert fired == [("fast", 1.0), ("fast", 2.0), ("slow", 3.0), ("fast", 3.0)]
