"""Replay protection: the message ids a receiver accepted, per sender, in bounded memory.

Keys cost nothing, so a flood of validly signed envelopes from fresh keys is the attack to
plan for. A single shared window of ids cannot survive it: to stay bounded it must forget,
and whatever rule refuses envelopes that might be replays of forgotten ids then refuses
everyone's traffic. So the state is kept per sender, and the only shared resource, memory,
is split so that each sender pays for its own traffic:

* Each tracked sender has its own `ReplayWindow` of ids. The total of ids is bounded by
  `capacity`; when it is exceeded, the sender holding the most ids forgets its own oldest
  one, which raises that sender's floor and nobody else's (max-min fairness: every tracked
  sender keeps at least its newest ``capacity / senders`` ids).
* At most `senders` senders are tracked. A new sender displaces the least recently active
  one, whose window is reduced to one number: the latest sent-at of any envelope accepted
  from it. Every envelope it ever had accepted was sent at or before that time, so refusing
  its envelopes sent at or before it keeps every replay out, and its own new envelopes,
  dated later, still pass. Only that sender's clock is involved.
* Those floors are kept exactly, keyed by a keyed 64-bit hash of the sender, for at most
  `floors` senders. Once a floor is older than ``3 * clock_skew`` (it can no longer refuse
  a fresh envelope from a sender whose clock is within the skew), it is folded into a fixed
  array of slots indexed by the same secret hash, each holding the highest floor folded into
  it. A sender with no exact floor is checked against its slot.

The guarantee: another sender's traffic can make a sender's envelope fail only if

1. it arrives out of order, after more than ``capacity / senders`` (100 by default) newer
   envelopes of the same sender were accepted, or after a newer one was accepted and the
   sender was then displaced (which takes ``senders`` newcomers in between); or
2. the sender is not tracked (new, or idle long enough to be displaced) and its slot holds
   a floor that had to be folded before it cooled down. That needs more than
   ``senders + floors`` distinct senders accepted within about ``3 * clock_skew`` seconds
   (51,000 in 30 s with the defaults, and counted in `hot_folds`); then a given untracked
   sender is hit with a probability of about (floors folded hot in the last
   ``3 * clock_skew``) / slots. The hash is keyed with a secret drawn per receiver, so
   nobody can aim a collision.

A sender that re-uses one key never displaces another sender (only a sender seen for the
first time does), and under id pressure the largest window gives way, not a smaller one.
Whatever happens to the bounds, no envelope is accepted twice while it is valid.

Memory: at most `capacity` ids, `senders` windows, `floors` exact floors, and
``4 * floors`` (rounded up to a power of two) 8-byte slots, allocated at the first fold;
about 35 MB with every bound of the default `EnvelopePolicy` reached.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from array import array
from collections import OrderedDict

from .errors import ReplayedEnvelope

_NO_FLOOR = -(2**63)  # below any sent-at: a sender never seen has no floor


class ReplayWindow:
    """Remembers accepted message ids until they expire, in bounded memory.

    An id needs remembering only while its envelope could still pass the expiry check, so
    ids are forgotten once expired. If more than `capacity` are live at once, the one
    expiring first is forgotten and `floor_ms` rises to its expiry: any envelope expiring at
    or before the floor is then refused, since it might be a replay of a forgotten id.
    Memory stays bounded and safety is kept; only very old-dated traffic is refused.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._live: set[bytes] = set()
        self._by_expiry: list[tuple[int, bytes]] = []
        self.floor_ms = 0

    def __len__(self) -> int:
        return len(self._live)

    def admit(self, message_id: bytes, expires_at_ms: int, horizon_ms: int) -> None:
        """Record `message_id`; ids expiring before `horizon_ms` are dropped first.

        Raises:
            ReplayedEnvelope: the id is already recorded, or expires at or before the floor.
        """
        heap = self._by_expiry
        while heap and heap[0][0] < horizon_ms:
            # Remember how far we forgot: if the wall clock later steps back, an envelope
            # expiring before this would be "in date" again and its id no longer known.
            self.forget_oldest()
        if message_id in self._live:
            raise ReplayedEnvelope(f"message id {message_id.hex()} was already accepted")
        if expires_at_ms <= self.floor_ms:
            raise ReplayedEnvelope(
                "envelope expires before the oldest id the replay window still remembers; "
                "resend it with a fresh id")
        self._live.add(message_id)
        heapq.heappush(heap, (expires_at_ms, message_id))
        if len(heap) > self._capacity:
            self.forget_oldest()

    def forget_oldest(self) -> None:
        """Forget the id that expires first and raise the floor to its expiry."""
        expiry, forgotten = heapq.heappop(self._by_expiry)
        self._live.discard(forgotten)
        self.floor_ms = max(self.floor_ms, expiry)

    def __repr__(self) -> str:
        return f"<ReplayWindow {len(self._live)}/{self._capacity} floor={self.floor_ms}>"


class _Sender:
    """What is known of one tracked sender."""

    __slots__ = ("newest_sent_ms", "sent_floor_ms", "window")

    def __init__(self, window: ReplayWindow, sent_floor_ms: int) -> None:
        self.window = window
        self.sent_floor_ms = sent_floor_ms
        """Envelopes sent at or before this are refused (state forgotten earlier)."""
        self.newest_sent_ms = sent_floor_ms
        """Latest sent-at accepted from this sender (or the floor it came back with)."""


class ReplayGuard:
    """Per-sender replay windows with bounded memory; see the module docstring.

    Args:
        capacity: message ids remembered in all, across senders.
        senders: senders whose windows are kept at once (least recently active leaves).
        floors: displaced senders whose floor is kept exactly, before folding into slots.
        clock_skew_ms: the receiver's allowed clock skew; decides when a floor is cold.
        secret: key of the sender hash (tests pass one to be reproducible); default random.
    """

    def __init__(self, *, capacity: int, senders: int, floors: int, clock_skew_ms: int,
                 secret: bytes | None = None) -> None:
        self._capacity = capacity
        self._max_senders = senders
        self._max_floors = floors
        self._skew_ms = clock_skew_ms
        self._secret = secret if secret is not None else os.urandom(16)
        self._senders: OrderedDict[str, _Sender] = OrderedDict()
        self._ids = 0
        # Lazy max-heap of (-size, sender): every tracked sender has an entry with its
        # current size; older entries are stale and skipped. Rebuilt when it grows too long.
        self._sizes: list[tuple[int, str]] = []
        self._floors: OrderedDict[int, int] = OrderedDict()
        self._slot_count = max(1024, 1 << (4 * floors - 1).bit_length())
        self._slots: array[int] | None = None
        self.hot_folds = 0
        """Floors folded into a slot while they could still refuse fresh envelopes."""

    def __len__(self) -> int:
        """Message ids remembered, across all senders."""
        return self._ids

    @property
    def senders(self) -> int:
        """Senders whose windows are kept now."""
        return len(self._senders)

    @property
    def floors(self) -> int:
        """Displaced senders whose floor is kept exactly now."""
        return len(self._floors)

    def admit(self, sender: str, message_id: bytes, sent_at_ms: int, expires_at_ms: int,
              now_ms: int) -> None:
        """Record that `sender`'s envelope `message_id` was accepted.

        Call it last, once the envelope passed every other check, so that nothing refused
        for another reason takes room here.

        Raises:
            ReplayedEnvelope: the id was already accepted, or the envelope is dated at or
                before what this receiver has forgotten of the sender.
        """
        self._fold_cold(now_ms)
        state = self._senders.get(sender)
        known = state is not None
        key = 0
        if state is None:
            key = self._key(sender)
            floor = self._floors.get(key)
            if floor is None:
                floor = (self._slots[key % self._slot_count] if self._slots is not None
                         else _NO_FLOOR)
            state = _Sender(ReplayWindow(self._capacity), floor)
        if sent_at_ms <= state.sent_floor_ms:
            raise ReplayedEnvelope(
                f"envelope from {sender} is dated at or before the newest one this receiver "
                "accepted from it before forgetting its ids; resend it with a fresh id")
        window = state.window
        before = len(window)
        try:
            window.admit(message_id, expires_at_ms, now_ms - self._skew_ms)
        finally:
            self._ids += len(window) - before
            if known and len(window) != before:  # expired ids left, even if refused
                self._note_size(sender, len(window))
        state.newest_sent_ms = max(state.newest_sent_ms, sent_at_ms)
        if known:
            self._senders.move_to_end(sender)
        else:
            # Only a sender seen for the first time (or again after leaving) displaces one.
            while len(self._senders) >= self._max_senders:
                self._displace_oldest_sender()
            self._floors.pop(key, None)  # its window carries the floor from now on
            self._senders[sender] = state
        self._note_size(sender, len(window))
        while self._ids > self._capacity:
            self._trim_largest()

    def _key(self, sender: str) -> int:
        digest = hashlib.blake2b(sender.encode(), digest_size=8, key=self._secret).digest()
        return int.from_bytes(digest, "big")

    def _note_size(self, sender: str, size: int) -> None:
        heapq.heappush(self._sizes, (-size, sender))
        if len(self._sizes) > 2 * len(self._senders) + 64:
            self._sizes = [(-len(s.window), name) for name, s in self._senders.items()]
            heapq.heapify(self._sizes)

    def _trim_largest(self) -> None:
        """The sender holding the most ids forgets its oldest one (raising its own floor)."""
        sizes = self._sizes
        while True:
            negative_size, sender = sizes[0]
            state = self._senders.get(sender)
            if state is not None and len(state.window) == -negative_size:
                break
            heapq.heappop(sizes)  # stale: the sender left, or its size changed since
        state.window.forget_oldest()
        self._ids -= 1
        heapq.heapreplace(sizes, (-len(state.window), sender))

    def _displace_oldest_sender(self) -> None:
        sender, state = self._senders.popitem(last=False)
        self._ids -= len(state.window)
        key = self._key(sender)
        self._floors[key] = max(state.newest_sent_ms, state.sent_floor_ms)
        self._floors.move_to_end(key)
        if len(self._floors) > self._max_floors:
            # Every kept floor is still hot (cold ones were folded on this admission): the
            # oldest must go to its slot early. This is the one case where another sender
            # can be affected; see the module docstring.
            oldest, floor = self._floors.popitem(last=False)
            self._fold(oldest, floor, hot=True)

    def _fold_cold(self, now_ms: int) -> None:
        """Move floors too old to refuse a fresh envelope into the slots."""
        cold_before = now_ms - 3 * self._skew_ms
        floors = self._floors
        while floors:
            key, floor = next(iter(floors.items()))
            if floor >= cold_before:
                return
            del floors[key]
            self._fold(key, floor, hot=False)

    def _fold(self, key: int, floor: int, *, hot: bool) -> None:
        if self._slots is None:
            self._slots = array("q", [_NO_FLOOR]) * self._slot_count
        index = key % self._slot_count
        if floor > self._slots[index]:
            self._slots[index] = floor
        self.hot_folds += hot

    def __repr__(self) -> str:
        return (f"<ReplayGuard ids={self._ids}/{self._capacity} "
                f"senders={len(self._senders)}/{self._max_senders} "
                f"floors={len(self._floors)}/{self._max_floors} hot_folds={self.hot_folds}>")
