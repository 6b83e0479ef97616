"""The simulated wide-area network: a `MemoryNetwork` route with latency, loss and dead peers.

Every frame of the simulation (signed envelopes between agents and the DHT's own RPCs) goes
through `WanRoute`, on the virtual clock:

- latency: each direction of each exchange takes a one-way delay drawn from a log-normal
  distribution (median `one_way_ms`, shape `jitter`), so a request/response costs two; both
  are waited before the frame is delivered (one timer instead of two: the answer then comes
  back at once, at the same time it would have come with a wait on either side);
- loss: with probability `loss` a request is lost and never answered (the caller's timeout
  ends it, as a lost packet on a broken connection does);
- dead peers: an endpoint nobody serves (an appliance that left) answers nothing for
  `dead_wait` seconds, then fails with `PeerUnreachable` (a dial timing out), unless the
  caller's own timeout ends it first.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field

from aaex_agents.errors import PeerUnreachable
from aaex_agents.transport.memory import Deliver


@dataclass
class WanStats:
    frames: int = 0
    lost: int = 0
    dead: int = 0


@dataclass
class WanRoute:
    one_way_ms: float = 20.0
    jitter: float = 0.5
    loss: float = 0.0
    dead_wait: float = 3.0
    seed: int = 0
    stats: WanStats = field(default_factory=WanStats)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._mu = math.log(self.one_way_ms / 1000)

    def delay(self) -> float:
        return self._rng.lognormvariate(self._mu, self.jitter)

    def lost(self) -> bool:
        lost = self._rng.random() < self.loss
        self.stats.lost += lost
        return lost

    async def __call__(self, endpoint: str, frame: bytes, deliver: Deliver) -> bytes | None:
        self.stats.frames += 1
        if self.loss and self.lost():
            await asyncio.Event().wait()  # never answered: the caller's timeout ends it
        await asyncio.sleep(self.delay() + self.delay())
        try:
            return await deliver(frame)
        except PeerUnreachable:
            self.stats.dead += 1
            await asyncio.sleep(self.dead_wait)
            raise
