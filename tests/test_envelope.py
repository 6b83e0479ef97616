"""Envelopes: sealing, decoding, and every way an inbound frame is rejected."""

from __future__ import annotations

import inspect
from typing import Any

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import aaex_agents
from aaex_agents import errors
from aaex_agents.clock import ManualClock
from aaex_agents.envelope import (
    ENVELOPE_TAG,
    ENVELOPE_VERSION,
    Envelope,
    EnvelopePolicy,
    check_fresh,
    decode_frame,
    seal,
)
from aaex_agents.errors import (
    AaexError,
    BadSignature,
    EnvelopeExpired,
    EnvelopeFromFuture,
    EnvelopeRejected,
    LifetimeTooLong,
    MalformedEnvelope,
    OversizeFrame,
    ReplayedEnvelope,
    UsageError,
)
from aaex_agents.identity import Identity
from aaex_agents.model import Message, decode_payload
from aaex_agents.replay import ReplayGuard, ReplayWindow

ALICE = Identity(b"\x01" * 32)
BOB = Identity(b"\x02" * 32)
MALLORY = Identity(b"\x03" * 32)
NOW = 1_750_000_000.0  # whole seconds: every `now` below converts to milliseconds exactly
TICK = 1 / 512  # a binary fraction of a second (~2 ms), also exact in milliseconds
POLICY = EnvelopePolicy()
SKEW = POLICY.clock_skew
MAX_FRAME = 64 * 1024


class Note(Message, type="test_envelope.note/1"):
    text: str
    count: int = 0
    blob: bytes = b""
    tags: tuple[str, ...] = ()
    score: float | None = None
    parent: str | None = None


class Untyped(Message):
    text: str


def make(message: Message | None = None, *, sender: Identity = ALICE, target: Identity = BOB,
         now: float = NOW, ttl: float = 30.0, **extra: Any) -> tuple[Envelope, bytes]:
    return seal(sender, target=target.address, message=message or Note(text="hello"), now=now,
                ttl=ttl, **extra)


def accept(frame: bytes, *, now: float, policy: EnvelopePolicy = POLICY,
           replay: ReplayGuard | None = None) -> Envelope:
    """The receiver's chain: decode, verify, then check time and replay."""
    window = replay if replay is not None else policy.new_replay_guard()
    envelope = decode_frame(frame, max_bytes=policy.max_frame_bytes)
    envelope.verify()
    check_fresh(envelope, now=now, policy=policy, replay=window)
    return envelope


def fields_of(envelope: Envelope) -> list[Any]:
    """The body fields in the documented order, rebuilt from the decoded envelope."""
    return [ENVELOPE_TAG, ENVELOPE_VERSION, envelope.message_id, envelope.sender,
            envelope.target, envelope.session, envelope.in_reply_to, envelope.message_type,
            envelope.sent_at_ms, envelope.expires_at_ms, envelope.payload]


def forge(fields: list[Any], signer: Identity = ALICE) -> bytes:
    """A frame with a hand-made body, signed by `signer` (so only the structure can be wrong)."""
    body = msgpack.packb(fields)
    return msgpack.packb([body, signer.sign(body)])


def flip_bit(data: bytes, bit: int) -> bytes:
    mutable = bytearray(data)
    mutable[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutable)


BASE_ENVELOPE, BASE_FRAME = make(Note(text="pay 10", count=10, blob=b"\x00\x01", tags=("a",)))
REPLY_ENVELOPE, REPLY_FRAME = make(Note(text="ok"), sender=BOB, target=ALICE,
                                   in_reply_to=BASE_ENVELOPE.message_id,
                                   session=BASE_ENVELOPE.session)

notes = st.builds(
    Note,
    text=st.text(max_size=200),
    count=st.integers(-(2**63), 2**64 - 1),
    blob=st.binary(max_size=200),
    tags=st.lists(st.text(max_size=20), max_size=5).map(tuple),
    score=st.none() | st.floats(allow_nan=False),
    parent=st.none() | st.text(max_size=20),
)
ids = st.binary(min_size=16, max_size=16)


# --- sealing and the round trip -------------------------------------------------------------


@settings(max_examples=150)
@given(note=notes, session=st.none() | ids, in_reply_to=st.none() | ids,
       sent_ms=st.integers(0, 4_000_000_000_000), ttl_ms=st.integers(1, 600_000))
def test_round_trip(note: Note, session: bytes | None, in_reply_to: bytes | None,
                    sent_ms: int, ttl_ms: int) -> None:
    now, ttl = sent_ms / 1000, ttl_ms / 1000
    envelope, frame = seal(ALICE, target=BOB.address, message=note, now=now, ttl=ttl,
                           session=session, in_reply_to=in_reply_to)
    decoded = decode_frame(frame)
    assert decoded == envelope
    assert decoded.sender == ALICE.address
    assert decoded.target == BOB.address
    assert decoded.message_type == "test_envelope.note/1"
    assert decoded.in_reply_to == in_reply_to
    if session is not None:
        assert decoded.session == session
    assert len(decoded.message_id) == 16 and len(decoded.session) == 16
    assert decoded.version == ENVELOPE_VERSION
    assert 0 <= decoded.expires_at_ms - decoded.sent_at_ms <= ttl_ms
    assert abs(decoded.sent_at_ms - sent_ms) <= 1
    assert decode_payload(Note, decoded.payload) == note
    assert msgpack.unpackb(frame) == [envelope.body, envelope.signature]
    accept(frame, now=decoded.sent_at_ms / 1000)


def test_documented_field_order_rebuilds_the_signed_body() -> None:
    body = msgpack.packb(fields_of(BASE_ENVELOPE))
    assert body == BASE_ENVELOPE.body
    assert forge(fields_of(BASE_ENVELOPE)) == BASE_FRAME


def test_each_seal_has_a_fresh_message_id_and_session() -> None:
    first, _ = make()
    second, _ = make()
    assert first.message_id != second.message_id
    assert first.session != second.session
    third, _ = make(session=first.session)
    assert third.session == first.session


def test_unmodified_frames_are_accepted() -> None:
    assert accept(BASE_FRAME, now=NOW).message_id == BASE_ENVELOPE.message_id
    reply = accept(REPLY_FRAME, now=NOW)
    assert reply.in_reply_to == BASE_ENVELOPE.message_id


@pytest.mark.parametrize("call", [
    lambda: seal(ALICE, target=BOB.address[:-1], message=Note(text="x"), now=NOW, ttl=1),
    lambda: seal(ALICE, target="bob", message=Note(text="x"), now=NOW, ttl=1),
    lambda: seal(ALICE, target=BOB.address, message=Note(text="x"), now=NOW, ttl=0),
    lambda: seal(ALICE, target=BOB.address, message=Note(text="x"), now=NOW, ttl=-1),
    lambda: seal(ALICE, target=BOB.address, message=Untyped(text="x"), now=NOW, ttl=1),
], ids=["checksum", "not-an-address", "zero-ttl", "negative-ttl", "untyped-message"])
def test_seal_refuses_bad_arguments(call: Any) -> None:
    with pytest.raises(UsageError):
        call()


@pytest.mark.parametrize("field", ["max_frame_bytes", "clock_skew", "max_lifetime",
                                   "replay_capacity", "replay_senders", "replay_floors"])
@pytest.mark.parametrize("value", [0, -1])
def test_policy_refuses_non_positive_values(field: str, value: int) -> None:
    with pytest.raises(UsageError, match=field):
        EnvelopePolicy(**{field: value})


# --- corrupted bytes ------------------------------------------------------------------------


def test_every_single_bit_flip_of_a_frame_is_rejected() -> None:
    seen: set[type[EnvelopeRejected]] = set()
    for frame in (BASE_FRAME, REPLY_FRAME):
        for bit in range(len(frame) * 8):
            with pytest.raises(EnvelopeRejected) as excinfo:
                accept(flip_bit(frame, bit), now=NOW)
            seen.add(type(excinfo.value))
    assert seen == {MalformedEnvelope, BadSignature}


@settings(max_examples=200)
@given(note=notes, in_reply_to=st.none() | ids, data=st.data())
def test_one_flipped_bit_is_never_accepted(note: Note, in_reply_to: bytes | None,
                                           data: st.DataObject) -> None:
    _, frame = make(note, in_reply_to=in_reply_to)
    bit = data.draw(st.integers(0, len(frame) * 8 - 1), label="bit")
    with pytest.raises(EnvelopeRejected):
        accept(flip_bit(frame, bit), now=NOW)


def test_every_truncation_of_a_frame_is_malformed() -> None:
    for frame in (BASE_FRAME, REPLY_FRAME):
        for length in range(len(frame)):
            with pytest.raises(MalformedEnvelope):
                decode_frame(frame[:length])


@settings(max_examples=100)
@given(note=notes, data=st.data())
def test_truncation_at_any_length_is_malformed(note: Note, data: st.DataObject) -> None:
    _, frame = make(note)
    length = data.draw(st.integers(0, len(frame) - 1), label="length")
    with pytest.raises(MalformedEnvelope):
        decode_frame(frame[:length])


@pytest.mark.parametrize("suffix", [b"\x00", b"\xc0", BASE_FRAME])
def test_trailing_bytes_are_malformed(suffix: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        decode_frame(BASE_FRAME + suffix)


@settings(max_examples=300)
@given(st.binary(max_size=2048))
def test_random_bytes_are_malformed_or_oversize(frame: bytes) -> None:
    limit = 1024
    expected = OversizeFrame if len(frame) > limit else MalformedEnvelope
    with pytest.raises(expected):
        decode_frame(frame, max_bytes=limit)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200)
@given(st.one_of(
    msgpack_values.map(msgpack.packb),
    st.tuples(msgpack_values, st.binary(max_size=80)).map(
        lambda pair: msgpack.packb([msgpack.packb(pair[0]), pair[1]])),
    st.tuples(st.lists(msgpack_values, min_size=11, max_size=11), st.binary(max_size=80)).map(
        lambda pair: msgpack.packb([msgpack.packb(pair[0]), pair[1]])),
))
def test_structured_junk_is_malformed(frame: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        decode_frame(frame)


@settings(max_examples=300)
@given(index=st.integers(0, 10), value=msgpack_values)
@example(index=1, value=True)
@example(index=8, value=True)
@example(index=9, value=1.5)
@example(index=6, value=b"\x00" * 16)
def test_replacing_one_field_never_yields_a_mistyped_envelope(index: int, value: Any) -> None:
    # Validly signed, so decode_frame alone decides: refuse, or return exact wire types.
    fields = fields_of(BASE_ENVELOPE)
    fields[index] = value
    try:
        envelope = decode_frame(forge(fields))
    except MalformedEnvelope:
        return
    envelope.verify()
    assert envelope.version == ENVELOPE_VERSION and type(envelope.version) is int
    assert type(envelope.sent_at_ms) is int and type(envelope.expires_at_ms) is int
    assert envelope.sent_at_ms <= envelope.expires_at_ms
    assert type(envelope.message_id) is bytes and len(envelope.message_id) == 16
    assert type(envelope.session) is bytes and len(envelope.session) == 16
    assert envelope.in_reply_to is None or len(envelope.in_reply_to) == 16
    assert type(envelope.message_type) is str and type(envelope.payload) is bytes


def test_oversize_frame_is_refused_before_decoding() -> None:
    with pytest.raises(OversizeFrame):
        decode_frame(BASE_FRAME, max_bytes=len(BASE_FRAME) - 1)
    with pytest.raises(OversizeFrame):
        decode_frame(b"\xff" * 100, max_bytes=99)  # junk, but the size check comes first
    assert decode_frame(BASE_FRAME, max_bytes=len(BASE_FRAME)) == BASE_ENVELOPE


def test_oversize_frame_through_policy() -> None:
    policy = EnvelopePolicy(max_frame_bytes=len(BASE_FRAME) - 1)
    with pytest.raises(OversizeFrame):
        accept(BASE_FRAME, now=NOW, policy=policy)


# --- signatures -----------------------------------------------------------------------------


def test_body_re_signed_by_another_identity_is_a_bad_signature() -> None:
    frame = forge(fields_of(BASE_ENVELOPE), signer=MALLORY)
    envelope = decode_frame(frame)
    assert envelope.sender == ALICE.address
    with pytest.raises(BadSignature):
        envelope.verify()


def test_forged_envelope_claiming_another_sender_is_a_bad_signature() -> None:
    own, _ = make(Note(text="from mallory"), sender=MALLORY)
    fields = fields_of(own)
    fields[3] = ALICE.address  # claim to be Alice, sign with Mallory's key
    with pytest.raises(BadSignature):
        accept(forge(fields, signer=MALLORY), now=NOW)


@pytest.mark.parametrize(("index", "value"), [
    (4, MALLORY.address),            # redirected to another target
    (7, "test_envelope.other/1"),    # relabelled type
    (8, BASE_ENVELOPE.sent_at_ms + 1000),
    (9, BASE_ENVELOPE.expires_at_ms + 1000),
    (10, Note(text="pay 1000").model_dump_json().encode()),
])
def test_edited_field_with_the_original_signature_is_a_bad_signature(index: int,
                                                                     value: Any) -> None:
    fields = fields_of(BASE_ENVELOPE)
    fields[index] = value
    body = msgpack.packb(fields)
    frame = msgpack.packb([body, BASE_ENVELOPE.signature])
    with pytest.raises(BadSignature):
        accept(frame, now=NOW)


def test_signature_swapped_between_frames_is_a_bad_signature() -> None:
    other, _ = make(Note(text="other"))
    frame = msgpack.packb([BASE_ENVELOPE.body, other.signature])
    with pytest.raises(BadSignature):
        accept(frame, now=NOW)


def test_signature_over_untagged_fields_is_a_bad_signature() -> None:
    # Alice signed the same fields without the envelope tag (another context); lift it over.
    untagged = msgpack.packb(fields_of(BASE_ENVELOPE)[1:])
    frame = msgpack.packb([BASE_ENVELOPE.body, ALICE.sign(untagged)])
    with pytest.raises(BadSignature):
        accept(frame, now=NOW)


# --- structure ------------------------------------------------------------------------------


def _with(index: int, value: Any) -> list[Any]:
    fields = fields_of(BASE_ENVELOPE)
    fields[index] = value
    return fields


ADDRESS = ALICE.address
BAD_CHECKSUM = ADDRESS[:-1] + ("q" if ADDRESS[-1] != "q" else "p")

MALFORMED_BODIES = {
    "wrong-tag": _with(0, "aaex/envelopf"),
    "empty-tag": _with(0, ""),
    "tag-as-bytes": _with(0, ENVELOPE_TAG.encode()),
    "version-2": _with(1, 2),
    "version-0": _with(1, 0),
    "version-as-str": _with(1, "1"),
    "ten-fields": fields_of(BASE_ENVELOPE)[:10],
    "twelve-fields": [*fields_of(BASE_ENVELOPE), b""],
    "no-fields": [],
    "body-is-a-map": {"tag": ENVELOPE_TAG},
    "body-is-a-string": ENVELOPE_TAG,
    "sent-at-bool": _with(8, True),
    "expires-at-bool": _with(9, True),
    "sent-at-float": _with(8, float(BASE_ENVELOPE.sent_at_ms)),
    "expires-at-str": _with(9, str(BASE_ENVELOPE.expires_at_ms)),
    "message-id-15-bytes": _with(2, b"\x00" * 15),
    "message-id-17-bytes": _with(2, b"\x00" * 17),
    "message-id-str": _with(2, "0" * 16),
    "session-15-bytes": _with(5, b"\x00" * 15),
    "session-none": _with(5, None),
    "in-reply-to-15-bytes": _with(6, b"\x00" * 15),
    "in-reply-to-str": _with(6, "0" * 16),
    "sender-bad-checksum": _with(3, BAD_CHECKSUM),
    "sender-upper-case": _with(3, ADDRESS.upper()),
    "sender-bytes": _with(3, ADDRESS.encode()),
    "sender-cut": _with(3, ADDRESS[:-1]),
    "sender-wrong-prefix": _with(3, "btc" + ADDRESS[4:]),
    "target-bad-checksum": _with(4, BAD_CHECKSUM),
    "target-none": _with(4, None),
    "message-type-int": _with(7, 7),
    "message-type-bytes": _with(7, b"test_envelope.note/1"),
    "payload-str": _with(10, "payload"),
    "payload-none": _with(10, None),
    "expires-before-sent": _with(9, BASE_ENVELOPE.sent_at_ms - 1),
}


@pytest.mark.parametrize("fields", list(MALFORMED_BODIES.values()), ids=list(MALFORMED_BODIES))
def test_malformed_body_is_refused(fields: Any) -> None:
    with pytest.raises(MalformedEnvelope):
        decode_frame(forge(fields))


@pytest.mark.parametrize("value", [True, 1.0], ids=["bool", "float"])
def test_version_must_be_the_integer_one(value: object) -> None:
    # The wire refuses a bool or float where an int is expected (see sent-at-bool above);
    # the version field must follow the same rule.
    with pytest.raises(MalformedEnvelope):
        decode_frame(forge(_with(1, value)))


def test_expires_equal_to_sent_is_well_formed() -> None:
    envelope = decode_frame(forge(_with(9, BASE_ENVELOPE.sent_at_ms)))
    envelope.verify()
    assert envelope.expires_at_ms == envelope.sent_at_ms


MALFORMED_FRAMES = {
    "not-a-list": msgpack.packb({"body": BASE_ENVELOPE.body}),
    "one-element": msgpack.packb([BASE_ENVELOPE.body]),
    "three-elements": msgpack.packb([BASE_ENVELOPE.body, BASE_ENVELOPE.signature, b""]),
    "body-as-str": msgpack.packb(["body", BASE_ENVELOPE.signature]),
    "signature-as-str": msgpack.packb([BASE_ENVELOPE.body, "signature"]),
    "signature-63-bytes": msgpack.packb([BASE_ENVELOPE.body, BASE_ENVELOPE.signature[:63]]),
    "signature-65-bytes": msgpack.packb([BASE_ENVELOPE.body, BASE_ENVELOPE.signature + b"\0"]),
    "body-not-msgpack": msgpack.packb([b"\xc1", BASE_ENVELOPE.signature]),
    "body-with-trailing-bytes": msgpack.packb([BASE_ENVELOPE.body + b"\x00",
                                               BASE_ENVELOPE.signature]),
    "body-invalid-utf8": msgpack.packb([b"\xa2\xff\xfe", BASE_ENVELOPE.signature]),
    "empty": b"",
}


@pytest.mark.parametrize("frame", list(MALFORMED_FRAMES.values()), ids=list(MALFORMED_FRAMES))
def test_malformed_frame_is_refused(frame: bytes) -> None:
    with pytest.raises(MalformedEnvelope):
        decode_frame(frame)


# --- time -----------------------------------------------------------------------------------


def test_expiry_boundary_with_a_manual_clock() -> None:
    envelope, frame = make(ttl=30.0)
    assert envelope.expires_at_ms == int((NOW + 30) * 1000)
    clock = ManualClock(NOW)
    clock.advance(30 + SKEW)  # exactly expiry + skew: still accepted
    accept(frame, now=clock.now())
    clock.advance(TICK)
    with pytest.raises(EnvelopeExpired):
        accept(frame, now=clock.now())


@pytest.mark.parametrize("skew", [0.5, 1.0, 60.0])
def test_expiry_boundary_follows_the_policy_skew(skew: float) -> None:
    policy = EnvelopePolicy(clock_skew=skew)
    _, frame = make(ttl=5.0)
    accept(frame, now=NOW + 5 + skew, policy=policy)
    with pytest.raises(EnvelopeExpired):
        accept(frame, now=NOW + 5 + skew + TICK, policy=policy)


def test_from_future_boundary() -> None:
    _, frame = make(now=NOW + SKEW)  # dated exactly `skew` ahead of the receiver
    accept(frame, now=NOW)
    with pytest.raises(EnvelopeFromFuture):
        accept(frame, now=NOW - TICK)
    _, far = make(now=NOW + 3600)
    with pytest.raises(EnvelopeFromFuture):
        accept(far, now=NOW)


def test_lifetime_boundary() -> None:
    _, longest = make(ttl=POLICY.max_lifetime)
    accept(longest, now=NOW)
    _, too_long = make(ttl=POLICY.max_lifetime + 1)
    with pytest.raises(LifetimeTooLong):
        accept(too_long, now=NOW)
    policy = EnvelopePolicy(max_lifetime=30)
    _, frame = make(ttl=30.5)
    with pytest.raises(LifetimeTooLong):
        accept(frame, now=NOW, policy=policy)


def test_rejected_envelope_does_not_occupy_the_replay_window() -> None:
    window = POLICY.new_replay_guard()
    _, frame = make(now=NOW + 60)
    with pytest.raises(EnvelopeFromFuture):
        accept(frame, now=NOW, replay=window)
    assert len(window) == 0
    accept(frame, now=NOW + 60, replay=window)
    assert len(window) == 1


# --- replay ---------------------------------------------------------------------------------


def test_same_frame_twice_is_a_replay() -> None:
    window = POLICY.new_replay_guard()
    accept(BASE_FRAME, now=NOW, replay=window)
    with pytest.raises(ReplayedEnvelope):
        accept(BASE_FRAME, now=NOW + 1, replay=window)
    resealed, frame = make(Note(text="pay 10", count=10, blob=b"\x00\x01", tags=("a",)))
    assert resealed.message_id != BASE_ENVELOPE.message_id
    accept(frame, now=NOW + 1, replay=window)  # same content, new id: not a replay
    assert len(window) == 2


def test_id_is_remembered_until_expiry_and_then_refused_as_expired() -> None:
    window = POLICY.new_replay_guard()
    _, old_frame = make(ttl=30.0)
    accept(old_frame, now=NOW, replay=window)
    # At expiry + skew the envelope still passes the time checks, so its id must be kept.
    _, fresh = make(now=NOW + 30 + SKEW)
    accept(fresh, now=NOW + 30 + SKEW, replay=window)
    assert len(window) == 2
    with pytest.raises(ReplayedEnvelope):
        accept(old_frame, now=NOW + 30 + SKEW, replay=window)
    # One tick later it is expired: another admission drops its id ...
    later = NOW + 30 + SKEW + TICK
    _, newer = make(now=later)
    accept(newer, now=later, replay=window)
    assert len(window) == 2  # old id forgotten: only `fresh` and `newer` are left
    # ... and the old frame is refused as expired, not accepted.
    with pytest.raises(EnvelopeExpired):
        accept(old_frame, now=later, replay=window)
    assert len(window) == 2


def test_replay_is_refused_after_the_clock_steps_back() -> None:
    # A wall clock can step backwards (an NTP correction). The window forgets an id once a
    # later admission sees it expired; if the clock then steps back, the same envelope is
    # again within its validity window and must still be refused.
    window = POLICY.new_replay_guard()
    clock = ManualClock(NOW)
    _, old_frame = make(ttl=30.0)
    accept(old_frame, now=clock.now(), replay=window)
    clock.advance(30 + SKEW + 5)
    _, fresh = make(now=clock.now())
    accept(fresh, now=clock.now(), replay=window)  # this admission forgets the old id
    clock.advance(-10)  # back to 5 s before old expiry + skew: old_frame is in date again
    with pytest.raises(ReplayedEnvelope):
        accept(old_frame, now=clock.now(), replay=window)


def test_full_window_stays_bounded_and_raises_its_floor() -> None:
    capacity = 8
    window = ReplayWindow(capacity)
    horizon = 0
    admitted: list[tuple[bytes, int]] = []
    for n in range(100):
        message_id, expiry = n.to_bytes(16, "big"), 10_000 + n
        window.admit(message_id, expiry, horizon)
        admitted.append((message_id, expiry))
        assert len(window) <= capacity
    assert len(window) == capacity
    assert window.floor_ms == 10_000 + 100 - capacity - 1
    # Every id that was forgotten for lack of room is still refused.
    for message_id, expiry in admitted[: 100 - capacity]:
        with pytest.raises(ReplayedEnvelope):
            window.admit(message_id, expiry, horizon)
    # Anything expiring at or before the floor is refused, even with a new id.
    with pytest.raises(ReplayedEnvelope):
        window.admit(b"\xff" * 16, window.floor_ms, horizon)
    with pytest.raises(ReplayedEnvelope):
        window.admit(b"\xfe" * 16, window.floor_ms - 500, horizon)
    # New envelopes expiring later are accepted, and the size stays bounded.
    window.admit(b"\xfd" * 16, window.floor_ms + 1, horizon)
    window.admit(b"\xfc" * 16, 50_000, horizon)
    assert len(window) == capacity


def test_full_window_through_check_fresh() -> None:
    policy = EnvelopePolicy(replay_capacity=3)
    window = policy.new_replay_guard()
    frames = [make(ttl=10.0 + n)[1] for n in range(6)]
    for frame in frames:
        accept(frame, now=NOW, policy=policy, replay=window)
        assert len(window) <= 3
    for frame in frames:
        with pytest.raises(ReplayedEnvelope):
            accept(frame, now=NOW, policy=policy, replay=window)
    _, early = make(ttl=11.0)  # a new id, but expiring before the floor
    with pytest.raises(ReplayedEnvelope):
        accept(early, now=NOW, policy=policy, replay=window)
    _, late = make(ttl=100.0)
    accept(late, now=NOW, policy=policy, replay=window)
    assert len(window) == 3


class ReplayWindowMachine(RuleBasedStateMachine):
    """Admissions of envelopes (an id signed together with its expiry) at a monotonic clock.

    A replay re-sends the same signed envelope, so an id always comes with the same expiry.
    An envelope is still valid while its expiry is at or after the horizon (now - skew).
    """

    envelopes = Bundle("envelopes")

    def __init__(self) -> None:
        super().__init__()
        self.horizon = 1_000
        self.counter = 0
        self.admitted: set[bytes] = set()
        self.window = ReplayWindow(1)
        self.capacity = 1

    @initialize(capacity=st.integers(1, 6))
    def start(self, capacity: int) -> None:
        self.capacity = capacity
        self.window = ReplayWindow(capacity)

    @rule(target=envelopes, lifetime=st.integers(-5, 60))
    def new_envelope(self, lifetime: int) -> tuple[bytes, int]:
        self.counter += 1
        return self.counter.to_bytes(16, "big"), self.horizon + lifetime

    @rule(envelope=envelopes)
    def admit(self, envelope: tuple[bytes, int]) -> None:
        message_id, expiry = envelope
        seen = message_id in self.admitted
        try:
            self.window.admit(message_id, expiry, self.horizon)
        except ReplayedEnvelope:
            # Refused only for a documented reason: seen before, or at/below the floor.
            assert seen or expiry <= self.window.floor_ms
            return
        assert not (seen and expiry >= self.horizon), "a live envelope was admitted twice"
        self.admitted.add(message_id)

    @rule(step=st.integers(0, 40))
    def advance(self, step: int) -> None:
        self.horizon += step

    @invariant()
    def bounded(self) -> None:
        assert len(self.window) <= self.capacity


ReplayWindowMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                                 deadline=None)
TestReplayWindowMachine = ReplayWindowMachine.TestCase


# --- rejection reasons ----------------------------------------------------------------------


EXPECTED_REASONS = {
    "MalformedEnvelope": "malformed",
    "OversizeFrame": "oversize",
    "BadSignature": "bad_signature",
    "WrongTarget": "wrong_target",
    "EnvelopeExpired": "expired",
    "EnvelopeFromFuture": "from_future",
    "LifetimeTooLong": "lifetime_too_long",
    "ReplayedEnvelope": "replayed",
    "UnknownMessageType": "unknown_type",
    "InvalidPayload": "invalid_payload",
    "ReceiverStopping": "stopping",
    "ReceiverBusy": "busy",
    # uAgents traffic (aaex_agents.interop): unsigned, or without an expiry
    "UnsignedEnvelope": "unsigned",
    "MissingExpiry": "no_expiry",
    # sealed frames (aaex_agents.sealing): does not open, re-addressed, plaintext reply,
    # or a channel key the receiver does not hold
    "BadSeal": "bad_seal",
    "ReaddressedEnvelope": "readdressed",
    "UnsealedEnvelope": "unsealed",
    "UnknownChannel": "unknown_channel",
}


def rejection_classes() -> list[type[EnvelopeRejected]]:
    return [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, EnvelopeRejected) and cls is not EnvelopeRejected]


def test_every_rejection_has_a_distinct_stable_reason() -> None:
    classes = rejection_classes()
    reasons = [cls.reason for cls in classes]
    assert len(set(reasons)) == len(reasons)
    assert EnvelopeRejected.reason not in reasons
    assert {cls.__name__: cls.reason for cls in classes} == EXPECTED_REASONS
    for cls in classes:
        assert issubclass(cls, EnvelopeRejected) and issubclass(cls, AaexError)
        assert cls.__name__ in aaex_agents.__all__
        assert cls.reason.isidentifier() and cls.reason == cls.reason.lower()
        assert cls("detail").reason == cls.reason


def _replayed() -> None:
    window = POLICY.new_replay_guard()
    accept(BASE_FRAME, now=NOW, replay=window)
    accept(BASE_FRAME, now=NOW, replay=window)


REJECTION_PATHS = {
    MalformedEnvelope: lambda: accept(BASE_FRAME[:-1], now=NOW),
    OversizeFrame: lambda: accept(
        BASE_FRAME, now=NOW, policy=EnvelopePolicy(max_frame_bytes=len(BASE_FRAME) - 1)),
    BadSignature: lambda: accept(forge(fields_of(BASE_ENVELOPE), signer=MALLORY), now=NOW),
    EnvelopeExpired: lambda: accept(BASE_FRAME, now=NOW + 3600),
    EnvelopeFromFuture: lambda: accept(BASE_FRAME, now=NOW - 3600),
    LifetimeTooLong: lambda: accept(make(ttl=3600)[1], now=NOW),
    ReplayedEnvelope: _replayed,
}


@pytest.mark.parametrize("cls", list(REJECTION_PATHS), ids=lambda cls: cls.__name__)
def test_each_check_raises_exactly_its_own_class(cls: type[EnvelopeRejected]) -> None:
    with pytest.raises(EnvelopeRejected) as excinfo:
        REJECTION_PATHS[cls]()
    assert type(excinfo.value) is cls
    assert excinfo.value.reason == EXPECTED_REASONS[cls.__name__]
    assert str(excinfo.value)  # a human-readable message as well
