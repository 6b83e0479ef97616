"""The replay guard: per-sender windows in bounded memory, where no sender's traffic makes
another sender's envelopes fail, and no envelope is ever accepted twice while valid."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from aaex_agents.envelope import EnvelopePolicy
from aaex_agents.errors import ReplayedEnvelope
from aaex_agents.replay import ReplayGuard

SKEW_MS = 10_000
LIFETIME_MS = 600_000
START_MS = 1_750_000_000_000
_ids = itertools.count(1)


def fresh_id() -> bytes:
    return next(_ids).to_bytes(16, "big")


def guard(capacity: int, senders: int, floors: int) -> ReplayGuard:
    return ReplayGuard(capacity=capacity, senders=senders, floors=floors,
                       clock_skew_ms=SKEW_MS, secret=b"k" * 16)


def assert_bounded(window: ReplayGuard, capacity: int, senders: int, floors: int) -> None:
    assert len(window) <= capacity
    assert window.senders <= senders
    assert window.floors <= floors


def test_policy_sizes_the_guard() -> None:
    policy = EnvelopePolicy(replay_capacity=10, replay_senders=3, replay_floors=5)
    window = policy.new_replay_guard()
    assert repr(window) == "<ReplayGuard ids=0/10 senders=0/3 floors=0/5 hot_folds=0>"


def test_a_displaced_sender_keeps_its_replays_out_and_its_new_envelopes_in() -> None:
    window = guard(capacity=100, senders=2, floors=100)
    now = START_MS
    early = [(fresh_id(), now + n) for n in range(3)]
    for message_id, sent in early:
        window.admit("legit", message_id, sent, sent + 60_000, now)
    for n in range(5):  # five newcomers displace "legit" from the two tracked senders
        window.admit(f"other-{n}", fresh_id(), now, now + 60_000, now)
    assert window.senders == 2 and window.floors == 4
    for message_id, sent in early:
        with pytest.raises(ReplayedEnvelope, match="dated at or before"):
            window.admit("legit", message_id, sent, sent + 60_000, now + 10)
    window.admit("legit", fresh_id(), now + 10, now + 60_010, now + 10)
    assert window.floors == 4  # "legit" is tracked again: its floor moved into its window


def test_cold_floors_fold_into_slots_that_still_refuse_replays() -> None:
    window = guard(capacity=100, senders=1, floors=100)
    now = START_MS
    old_id = fresh_id()
    window.admit("a", old_id, now, now + LIFETIME_MS, now)
    window.admit("b", fresh_id(), now, now + LIFETIME_MS, now)  # displaces "a"
    assert window.floors == 1
    later = now + 3 * SKEW_MS + 1
    window.admit("b", fresh_id(), later, later + 60_000, later)  # folds "a"'s cold floor
    assert window.floors == 0 and window.hot_folds == 0
    with pytest.raises(ReplayedEnvelope):  # still in date, still refused (by its slot)
        window.admit("a", old_id, now, now + LIFETIME_MS, later)
    window.admit("a", fresh_id(), later, later + 60_000, later)  # a fresh one passes


def test_one_key_flooding_never_displaces_or_trims_a_smaller_sender() -> None:
    capacity = 50
    window = guard(capacity=capacity, senders=4, floors=10)
    now = START_MS
    legit = [fresh_id() for _ in range(5)]
    for n, message_id in enumerate(legit):
        window.admit("legit", message_id, now + n, now + 60_000 + n, now)
    for n in range(20 * capacity):
        window.admit("mallory", fresh_id(), now + 9_000, now + 9_000 + 599_000 + n, now + n)
        assert_bounded(window, capacity, 4, 10)
    assert window.senders == 2 and window.floors == 0
    for n, message_id in enumerate(legit):  # every id still known exactly
        with pytest.raises(ReplayedEnvelope, match="already accepted"):
            window.admit("legit", message_id, now + n, now + 60_000 + n, now + 20 * capacity)


def test_overflowing_floors_stay_bounded_and_keep_every_replay_out() -> None:
    capacity, senders, floors = 8, 2, 4
    window = guard(capacity, senders, floors)
    now = START_MS
    accepted: list[tuple[str, bytes, int, int]] = []
    for n in range(600):
        sender = f"fresh-{n}"
        for k in range(2):
            message_id, sent = fresh_id(), now + k
            window.admit(sender, message_id, sent, sent + LIFETIME_MS, now)
            accepted.append((sender, message_id, sent, sent + LIFETIME_MS))
            assert_bounded(window, capacity, senders, floors)
        now += 1
    assert window.hot_folds > 0  # the case the guarantee excludes happened ...
    for sender, message_id, sent, expires in accepted:  # ... and still no replay got in
        with pytest.raises(ReplayedEnvelope):
            window.admit(sender, message_id, sent, expires, now)
        assert_bounded(window, capacity, senders, floors)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(-SKEW_MS, SKEW_MS),
                                st.integers(0, LIFETIME_MS), st.integers(0, 400)),
                      min_size=1, max_size=300),
       capacity=st.integers(8, 40), senders=st.integers(1, 6))
def test_other_senders_never_make_a_sender_fail(
        steps: list[tuple[bool, int, int, int, int]], capacity: int, senders: int) -> None:
    # Attackers use fresh keys or re-use a few, date envelopes anywhere within the skew and
    # ask for any lifetime. The legitimate sender sends in order with a 60 s lifetime.
    # With room for every displaced floor (the documented condition), it is never refused.
    floors = len(steps) + 1
    window = guard(capacity, senders, floors)
    now = START_MS
    fresh = itertools.count()
    for fresh_key, reused, offset, lifetime, advance in steps:
        attacker = f"fresh-{next(fresh)}" if fresh_key else f"reused-{reused}"
        sent = now + offset
        try:
            window.admit(attacker, fresh_id(), sent, sent + lifetime, now)
        except ReplayedEnvelope:
            pass  # an attacker may trip over its own floor; that is its business
        now += 1 + advance
        window.admit("legit", fresh_id(), now, now + 60_000, now)
        assert_bounded(window, capacity, senders, floors)
    assert window.hot_folds == 0


class ReplayGuardMachine(RuleBasedStateMachine):
    """Safety and bounds under any interleaving: an envelope (an id signed with its sender,
    sent-at and expiry) is never accepted twice while it is still valid."""

    envelopes = Bundle("envelopes")

    def __init__(self) -> None:
        super().__init__()
        self.now = START_MS
        self.counter = 0
        self.admitted: set[bytes] = set()
        self.sizes = (1, 1, 1)
        self.window = guard(*self.sizes)

    @initialize(capacity=st.integers(1, 6), senders=st.integers(1, 4), floors=st.integers(1, 4))
    def start(self, capacity: int, senders: int, floors: int) -> None:
        self.sizes = (capacity, senders, floors)
        self.window = guard(capacity, senders, floors)

    @rule(target=envelopes, sender=st.integers(0, 7), offset=st.integers(-SKEW_MS, SKEW_MS),
          lifetime=st.integers(0, 60_000))
    def new_envelope(self, sender: int, offset: int, lifetime: int) -> tuple[str, bytes, int, int]:
        self.counter += 1
        sent = self.now + offset
        return f"s{sender}", self.counter.to_bytes(16, "big"), sent, sent + lifetime

    @rule(envelope=envelopes)
    def admit(self, envelope: tuple[str, bytes, int, int]) -> None:
        sender, message_id, sent, expires = envelope
        if expires + SKEW_MS < self.now or sent > self.now + SKEW_MS:
            return  # the time checks, which run before the guard, refuse it
        try:
            self.window.admit(sender, message_id, sent, expires, self.now)
        except ReplayedEnvelope:
            return
        assert message_id not in self.admitted, "a valid envelope was accepted twice"
        self.admitted.add(message_id)

    @rule(step=st.integers(0, 3 * SKEW_MS))
    def advance(self, step: int) -> None:
        self.now += step

    @rule(step=st.integers(1, SKEW_MS))
    def step_back(self, step: int) -> None:
        self.now -= step  # wall clocks step back (NTP); replays must stay out anyway

    @invariant()
    def bounded(self) -> None:
        assert_bounded(self.window, *self.sizes)


ReplayGuardMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60,
                                                deadline=None)
TestReplayGuardMachine = ReplayGuardMachine.TestCase
