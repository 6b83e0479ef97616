"""A seller's open negotiations: how many it holds, for how long, and whose give way first.

Any key may open a negotiation with a call for proposals, and keys are free to mint, so a
seller bounds what it holds for them (`DialogueLimits`, the node's ``[dialogues]`` table):

- a buyer may ask it to negotiate at most `max_window` seconds ahead (``respond_by``), so
  every open dialogue lapses soon, whoever opened it;
- one buyer key holds at most `max_per_buyer` open dialogues;
- all buyers together hold at most `max_open` slots, a slot being ``max_open_bytes /
  max_open`` bytes (6,710 by default): a dialogue takes as many as its weight (a fixed
  overhead plus its task's encoded size) needs, one for an ordinary call. So the table holds at
  most `max_open` dialogues and `max_open_bytes` of weight.

When the table is full, a newcomer may displace a dialogue, by this rule (`OpenDialogues`):

1. Lapsed dialogues (``respond_by`` passed) leave first.
2. A buyer with *standing* (it paid this seller for a delivery before: a receipt that released
   credits to it, see `ServiceSeller`) is never displaced by one without. Strangers' dialogues
   give way to a buyer with standing.
3. Among buyers of the same standing, the one holding the most gives way, its oldest dialogue
   first, and only when it holds at least as much as the newcomer will once admitted.
   Otherwise the newcomer is declined with ``busy``. What a buyer holds is what it reserved:
   for each of its open dialogues, slots times the seconds it asked for them (``respond_by``
   minus the time of the call, rounded up, at least 1).

Why this rule. A flood of fresh keys chooses everything about its calls: their number, their
tasks, their deadlines. It cannot forge having bought from the seller, so rule 2 keeps a
seller's customers served during any flood of strangers (to take their places, an attacker
must first buy, have the work done and sign that it owes for it, once per key). Among
strangers no field tells an honest buyer from a flooder, so rule 3 shares the table by what
each buyer costs it, memory times time: a key that holds many dialogues, big tasks or long
windows loses them before one that holds few, small and short; a newcomer that would hold more
than anyone else is refused rather than served at their expense (a call a hundred slots big
cannot push out a hundred small ones); and ties go oldest first. To keep the table full, a
flood must hold `max_open` slots all the time: with windows of w seconds it must send
``max_open / w`` calls a second (5,000 a second for the default 10,000 slots and a 2 s window,
beyond the signature checks one node makes in a second), and the longer the windows it picks
to send fewer, the sooner it gives way to honest buyers, who ask for seconds (a node's
delegator: ``[market] negotiation_window``, 2 s). Refusing every newcomer when full, as
sellers did before, let one flood shut a seller out for as long as the flooder's
``respond_by``, which nothing bounded.

Finished dialogues (agreed, closed, withdrawn) leave the table at once; agreed ones are kept
by the seller (with their task dropped) but count against no quota here.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aaex_agents.errors import UsageError

from .errors import Refusal

DIALOGUE_OVERHEAD_BYTES = 2560
"""What an open dialogue costs besides its task: its call, offer and book-keeping (about
2.6 kB per dialogue of a small task, measured with tracemalloc)."""

DialogueKey = tuple[str, str]
"""(buyer address, dialogue id): a dialogue id is the buyer's choice, so it names a dialogue
only together with its buyer; another buyer, a rival seller or an A2A caller naming the same
id names another dialogue."""


@dataclass(frozen=True, kw_only=True)
class DialogueLimits:
    """How much one seller holds for negotiations still open (the ``[dialogues]`` table).

    Every seller on a node gets these. The defaults bound an open table to about
    ``max_open_bytes`` of weight (a task's Python objects take up to about three times its
    JSON size).

    Attributes:
        max_open: slots of the table: open dialogues held at once, over all buyers, when
            each takes one (default 10,000).
        max_per_buyer: open dialogues one buyer key holds at once (default 256: a planner may
            run hundreds of negotiations at once, and a key holding many gives way first when
            the table is full); beyond it the buyer is declined ``too_many_dialogues``.
        max_open_bytes: what the open dialogues weigh together, in bytes (default 64 MiB):
            each weighs `DIALOGUE_OVERHEAD_BYTES` plus its task's JSON size, and takes
            ``ceil(weight / slot_bytes)`` slots. A call heavier than this alone is declined
            ``task_too_large``.
        max_window: seconds ahead a call's ``respond_by`` may lie (default 300); beyond it
            the call is declined ``respond_by_too_far``, so no dialogue outlives it.
    """

    max_open: int = 10_000
    max_per_buyer: int = 256
    max_open_bytes: int = 64 * 1024 * 1024
    max_window: float = 300.0

    def __post_init__(self) -> None:
        for name in ("max_open", "max_per_buyer", "max_open_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"dialogues.{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.max_window) and self.max_window > 0):
            raise UsageError(f"dialogues.max_window must be a positive number of seconds, "
                             f"got {self.max_window!r}")
        if self.max_open_bytes < self.max_open * DIALOGUE_OVERHEAD_BYTES:
            raise UsageError(f"dialogues.max_open_bytes ({self.max_open_bytes}) must hold "
                             f"max_open calls of {DIALOGUE_OVERHEAD_BYTES} bytes at least "
                             f"({self.max_open * DIALOGUE_OVERHEAD_BYTES})")
        if self.max_per_buyer > self.max_open:
            raise UsageError(f"dialogues.max_per_buyer ({self.max_per_buyer}) must not exceed "
                             f"dialogues.max_open ({self.max_open})")

    @property
    def slot_bytes(self) -> int:
        """The weight one slot holds: ``max_open_bytes // max_open``, at least 1."""
        return max(1, self.max_open_bytes // self.max_open)

    def check_window(self, respond_by: float, now: float) -> None:
        """Refuse a call whose ``respond_by`` lies more than `max_window` ahead (or is NaN).

        Raises:
            Refusal: ``respond_by_too_far``.
        """
        ahead = respond_by - now
        if not ahead <= self.max_window:  # also true for NaN
            raise Refusal("respond_by_too_far",
                          f"respond_by is {ahead:.0f} s ahead; this seller negotiates at most "
                          f"{self.max_window:g} s ahead")


def task_weight(task: Mapping[str, Any]) -> int:
    """What a dialogue about `task` weighs: the fixed overhead plus the task's JSON size."""
    encoded = json.dumps(task, separators=(",", ":"), default=str)
    return DIALOGUE_OVERHEAD_BYTES + len(encoded.encode())


@dataclass
class _Held:
    buyer: str
    slots: int
    reserved: int
    """Slots times the whole seconds asked for (at least 1): what rule 3 weighs."""
    respond_by: float


class _Tier:
    """The buyers of one standing, findable by who holds the most (a heap, lazily pruned)."""

    def __init__(self) -> None:
        self.holding: dict[str, int] = {}
        """What each buyer of this tier reserved (only buyers holding something)."""
        self._heap: list[tuple[int, int, str]] = []
        self._seq = 0

    def set(self, buyer: str, reserved: int) -> None:
        if reserved <= 0:
            self.holding.pop(buyer, None)
        else:
            self.holding[buyer] = reserved
            self._seq += 1
            heapq.heappush(self._heap, (-reserved, self._seq, buyer))
        if len(self._heap) > 2 * len(self.holding) + 64:  # drop the stale entries
            self._heap = [e for e in self._heap if self.holding.get(e[2]) == -e[0]]
            heapq.heapify(self._heap)

    def heaviest(self) -> tuple[str, int] | None:
        """The buyer holding the most; of equal holders, the one that reached it first."""
        while self._heap:
            negative, _, buyer = self._heap[0]
            if self.holding.get(buyer) == -negative:
                return buyer, -negative
            heapq.heappop(self._heap)
        return None


class OpenDialogues:
    """The accounting of a seller's open dialogues under `limits` (see the module docstring).

    It holds keys, slots and deadlines, never the dialogues: the seller drops the
    dialogues whose keys `lapse` and `admit` return.
    """

    def __init__(self, limits: DialogueLimits) -> None:
        self.limits = limits
        self._held: dict[DialogueKey, _Held] = {}
        self._by_buyer: dict[str, dict[DialogueKey, None]] = {}  # in arrival order
        self._standing: dict[str, bool] = {}
        self._tiers = {False: _Tier(), True: _Tier()}
        self._lapsing: list[tuple[float, DialogueKey]] = []
        self.slots = 0
        """Slots taken, at most `limits.max_open`."""

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __repr__(self) -> str:
        return (f"<OpenDialogues {len(self._held)} dialogues "
                f"slots={self.slots}/{self.limits.max_open} buyers={len(self._by_buyer)}>")

    def held_by(self, buyer: str) -> int:
        """Open dialogues `buyer` holds."""
        return len(self._by_buyer.get(buyer, ()))

    def lapse(self, now: float) -> list[DialogueKey]:
        """Stop holding the dialogues whose ``respond_by`` passed; return their keys."""
        gone = []
        while self._lapsing and self._lapsing[0][0] < now:
            respond_by, key = heapq.heappop(self._lapsing)
            held = self._held.get(key)
            if held is not None and held.respond_by == respond_by:
                self.close(key)
                gone.append(key)
        if len(self._lapsing) > 2 * len(self._held) + 64:  # finished ones left stale entries
            self._lapsing = [(h.respond_by, k) for k, h in self._held.items()]
            heapq.heapify(self._lapsing)
        return gone

    def admit(self, key: DialogueKey, weight: int, respond_by: float, *, now: float,
              standing: bool) -> list[DialogueKey]:
        """Hold a new dialogue, displacing others if the table is full; return their keys.

        Call `lapse` first, so lapsed dialogues make room before anyone is displaced. A
        newcomer refused after displacing some dialogues displaced only buyers that held at
        least as much as it would have: they would have given way to the next caller alike.

        Raises:
            Refusal: ``too_many_dialogues`` (the buyer's own quota), ``task_too_large`` (the
                call alone outweighs the table) or ``busy`` (no one holding as much as the
                newcomer would is left to give way).
        """
        limits = self.limits
        buyer = key[0]
        mine = self._by_buyer.get(buyer, {})
        if len(mine) >= limits.max_per_buyer:
            raise Refusal("too_many_dialogues",
                          f"you hold {len(mine)} open negotiations here, the most one buyer may;"
                          " finish one or let it lapse")
        slots = -(-weight // limits.slot_bytes)
        if slots > limits.max_open:
            raise Refusal("task_too_large",
                          f"the call weighs {weight} bytes; this seller holds at most "
                          f"{limits.max_open_bytes} for all open negotiations")
        if mine and self._standing[buyer] != standing:  # it bought since: move its holdings
            before = self._standing[buyer]
            self._tiers[standing].set(buyer, self._tiers[before].holding[buyer])
            self._tiers[before].set(buyer, 0)
        reserved = slots * max(1, math.ceil(respond_by - now))
        claim = self._tiers[standing].holding.get(buyer, 0) + reserved
        displaced = []
        while self.slots + slots > limits.max_open:
            victim = self._victim(standing, claim)
            if victim is None:
                raise Refusal("busy", "too many open negotiations; try later")
            self.close(victim)
            displaced.append(victim)
        self._held[key] = _Held(buyer, slots, reserved, respond_by)
        self._by_buyer.setdefault(buyer, {})[key] = None
        self._standing[buyer] = standing
        self._tiers[standing].set(buyer, claim)
        self.slots += slots
        heapq.heappush(self._lapsing, (respond_by, key))
        return displaced

    def _victim(self, standing: bool, claim: int) -> DialogueKey | None:
        """The oldest dialogue of whoever gives way to a newcomer (see the module docstring)."""
        stranger = self._tiers[False].heaviest()
        if standing and stranger is not None:
            return next(iter(self._by_buyer[stranger[0]]))
        heaviest = self._tiers[standing].heaviest()
        if heaviest is None or heaviest[1] < claim:
            return None
        return next(iter(self._by_buyer[heaviest[0]]))

    def close(self, key: DialogueKey) -> None:
        """Stop holding `key` (agreed, closed, withdrawn or displaced); unknown keys are fine."""
        held = self._held.pop(key, None)
        if held is None:
            return
        mine = self._by_buyer[held.buyer]
        del mine[key]
        standing = self._standing[held.buyer]
        tier = self._tiers[standing]
        tier.set(held.buyer, tier.holding[held.buyer] - held.reserved)
        if not mine:
            del self._by_buyer[held.buyer]
            del self._standing[held.buyer]
        self.slots -= held.slots
