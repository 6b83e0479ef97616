"""A concurrency limit whose waiting line is fair between agents.

A plain semaphore serves waiters first come, first served: one agent that fires fifty
requests makes every other agent wait behind all fifty. Here each agent has its own line and
a freed slot goes to the next agent in round-robin order, so an agent waits behind at most
one request of each other agent per round.

No task runs in the background: a finishing request hands its slot directly to the next
waiter.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..errors import UsageError


class FairLimiter:
    """At most `limit` holders at once; waiters are served round-robin by key."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise UsageError(f"the concurrency limit must be positive, got {limit}")
        self.limit = limit
        self.active = 0
        # Keys with waiters, in service order; the key served last moves to the end.
        self._lines: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        """How many callers are queued."""
        return sum(len(line) for line in self._lines.values())

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one slot for the block; queue behind `key`'s line while all are taken.

        Cancelling a waiter removes it from its line; cancelling a holder frees its slot.
        """
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str) -> None:
        if self.active < self.limit and not self._lines:
            self.active += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines.setdefault(key, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the slot was handed to us as we were cancelled: pass it on
            else:
                line = self._lines.get(key)
                if line is not None and waiter in line:
                    line.remove(waiter)
                    if not line:
                        del self._lines[key]
            raise

    def _release(self) -> None:
        """Hand the freed slot to the next key in round-robin order, or free it."""
        while self._lines:
            key, line = next(iter(self._lines.items()))
            waiter = line.popleft()
            if line:
                self._lines.move_to_end(key)
            else:
                del self._lines[key]
            if not waiter.done():
                waiter.set_result(None)  # the slot passes over; `active` is unchanged
                return
        self.active -= 1

    def __repr__(self) -> str:
        return f"<FairLimiter {self.active}/{self.limit} waiting={self.waiting}>"
