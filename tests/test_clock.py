"""The manual clock moves once for all sleepers."""

from __future__ import annotations

import asyncio

import pytest

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
