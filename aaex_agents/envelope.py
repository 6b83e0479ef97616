"""Signed envelopes: what crosses the wire between agents, and the checks on receipt.

A frame is the msgpack array ``[body, signature]``. `body` is itself the canonical msgpack
array of every header field plus the payload, and the Ed25519 signature covers exactly those
bytes, so the receiver verifies what it received without re-encoding anything. Field order::

    ["aaex/envelope", version, message_id, sender, target, session, in_reply_to,
     message_type, sent_at_ms, expires_at_ms, payload]

The leading tag separates envelope signatures from every other thing an agent signs (DHT
records, agreements), so a signature can never be lifted from one context into another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import msgpack

from .address import ADDRESS_LENGTH, public_key_from_address
from .errors import (
    BadSignature,
    EnvelopeExpired,
    EnvelopeFromFuture,
    LifetimeTooLong,
    MalformedEnvelope,
    OversizeFrame,
    UsageError,
    clip,
    quote,
)
from .identity import SIGNATURE_BYTES, Identity, verify_signature
from .model import MAX_TYPE_NAME_LENGTH, Message, encode_payload, require_type_name
from .replay import ReplayGuard

ENVELOPE_TAG = "aaex/envelope"
ENVELOPE_VERSION = 1
ID_BYTES = 16
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded envelope. Its signature is checked by `verify`, not by decoding."""

    message_id: bytes
    sender: str
    target: str
    session: bytes
    in_reply_to: bytes | None
    message_type: str
    sent_at_ms: int
    expires_at_ms: int
    payload: bytes
    body: bytes
    signature: bytes
    version: int = ENVELOPE_VERSION

    def verify(self) -> None:
        """Raise BadSignature unless the sender's key signed this body."""
        if not verify_signature(self.sender, self.body, self.signature):
            raise BadSignature(
                f"signature of {self.message_type} from {self.sender} does not verify")

    def __repr__(self) -> str:
        return (f"<Envelope {self.message_type} {self.message_id.hex()[:8]} "
                f"{self.sender[:12]}..->{self.target[:12]}..>")


def new_id() -> bytes:
    """A random 128-bit identifier for a message or a session."""
    return os.urandom(ID_BYTES)


def seal(identity: Identity, *, target: str, message: Message, now: float, ttl: float,
         session: bytes | None = None, in_reply_to: bytes | None = None) -> tuple[Envelope, bytes]:
    """Sign `message` from `identity` to `target`; return the envelope and its wire frame.

    Raises:
        UsageError: `target` is not an address, `message` has no type name, or `ttl` <= 0.
    """
    public_key_from_address(target)  # fail here, with a clear message, not at the peer
    if ttl <= 0:
        raise UsageError(f"ttl must be positive seconds, got {ttl!r}")
    message_type = require_type_name(type(message))
    message_id = new_id()
    session = session if session is not None else new_id()
    sent_at_ms = int(now * 1000)
    expires_at_ms = sent_at_ms + int(ttl * 1000)
    payload = encode_payload(message)
    body = msgpack.packb([ENVELOPE_TAG, ENVELOPE_VERSION, message_id, identity.address, target,
                          session, in_reply_to, message_type, sent_at_ms, expires_at_ms, payload])
    signature = identity.sign(body)
    envelope = Envelope(message_id, identity.address, target, session, in_reply_to, message_type,
                        sent_at_ms, expires_at_ms, payload, body, signature)
    return envelope, msgpack.packb([body, signature])


def decode_frame(frame: bytes, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Envelope:
    """Decode the structure of `frame` without trusting it (the signature is not checked).

    Everything here runs before the signature is verified, for anyone who can open a
    connection, so the work is bounded by the frame's length at C speed: the outer pair is
    split by its headers, nested arrays or maps in a large body are refused before they are
    built, and every string field is checked against its fixed size or maximum before it is
    parsed (the address checksum only runs on a string of an address's exact length).
    Error messages quote at most a few dozen characters.

    Raises:
        OversizeFrame: `frame` is longer than `max_bytes`.
        MalformedEnvelope: anything else wrong with the bytes; the message names the field.
    """
    if len(frame) > max_bytes:
        raise OversizeFrame(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
    body, signature = _split_frame(frame)
    if len(signature) != SIGNATURE_BYTES:
        raise MalformedEnvelope(f"signature is {len(signature)} bytes, not {SIGNATURE_BYTES}")
    fields = _body_fields(body)
    (tag, version, message_id, sender, target, session, in_reply_to, message_type, sent_at_ms,
     expires_at_ms, payload) = fields
    if tag != ENVELOPE_TAG:
        raise MalformedEnvelope(f"body tag is {quote(tag)}, not {ENVELOPE_TAG!r}")
    if type(version) is not int or version != ENVELOPE_VERSION:
        raise MalformedEnvelope(f"envelope version {quote(version)} is not supported")
    _expect(message_id, bytes, "message_id", size=ID_BYTES)
    _expect(session, bytes, "session", size=ID_BYTES)
    if in_reply_to is not None:
        _expect(in_reply_to, bytes, "in_reply_to", size=ID_BYTES)
    _expect(message_type, str, "message_type")
    if not 0 < len(message_type) <= MAX_TYPE_NAME_LENGTH:
        raise MalformedEnvelope(f"message_type is {len(message_type)} characters; type names "
                                f"have 1 to {MAX_TYPE_NAME_LENGTH}")
    _expect(sent_at_ms, int, "sent_at_ms")
    _expect(expires_at_ms, int, "expires_at_ms")
    _expect(payload, bytes, "payload")
    for name, value in (("sender", sender), ("target", target)):
        _expect(value, str, name)
        if len(value) != ADDRESS_LENGTH:
            raise MalformedEnvelope(f"{name} is {len(value)} characters; an AAEX address has "
                                    f"{ADDRESS_LENGTH}")
        try:
            public_key_from_address(value)
        except UsageError as exc:
            raise MalformedEnvelope(f"{name}: {exc}") from None
    if expires_at_ms < sent_at_ms:
        raise MalformedEnvelope("expires_at_ms is earlier than sent_at_ms")
    return Envelope(message_id, sender, target, session, in_reply_to, message_type, sent_at_ms,
                    expires_at_ms, payload, body, signature, version)


_FIXARRAY_OF_TWO = 0x92
_BIN_LENGTH_BYTES = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin 8, bin 16, bin 32
_STR_MARKERS = frozenset([*range(0xA0, 0xC0), 0xD9, 0xDA, 0xDB])
_CONTAINER_MARKERS = frozenset([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_SMALL_BODY_BYTES = 4096
"""Bodies up to this size are unpacked in one call: even all nested arrays, they cost no
more than one signature check. Larger ones are read field by field (see `_body_fields`)."""


def _split_frame(frame: bytes) -> tuple[bytes, bytes]:
    """Split the outer ``[body, signature]`` by its headers, without unpacking anything."""
    if not frame or frame[0] != _FIXARRAY_OF_TWO:
        raise MalformedEnvelope("frame is not a [body, signature] pair")
    body, end = _bin_at(frame, 1)
    signature, end = _bin_at(frame, end)
    if end != len(frame):
        raise MalformedEnvelope(f"frame has {len(frame) - end} bytes after [body, signature]")
    return body, signature


def _bin_at(frame: bytes, at: int) -> tuple[bytes, int]:
    """The msgpack bin starting at `at`, and where it ends."""
    if at >= len(frame):
        raise MalformedEnvelope("frame is cut short: not a [body, signature] pair")
    marker = frame[at]
    width = _BIN_LENGTH_BYTES.get(marker)
    if width is None:
        if marker in _STR_MARKERS:
            raise MalformedEnvelope("body and signature must be bytes")
        raise MalformedEnvelope("frame is not a [body, signature] pair")
    start = at + 1 + width
    end = start + int.from_bytes(frame[at + 1:start], "big")
    if start > len(frame) or end > len(frame):
        raise MalformedEnvelope(f"frame is cut short: {end - len(frame)} bytes missing")
    return frame[start:end], end


def _body_fields(body: bytes) -> list[Any]:
    """Unpack the body as an array of 11 fields.

    A nested array or map in a large body is refused by its first byte, before msgpack
    builds it: an envelope has none, and a megabyte of nested arrays would otherwise cost
    tens of milliseconds before anything is verified. A small body takes one C call.
    """
    wrong_shape = "body is not an 11-field envelope array"
    try:
        if len(body) <= _SMALL_BODY_BYTES:
            fields = msgpack.unpackb(body, raw=False, max_array_len=11, max_map_len=0)
            if not (isinstance(fields, list) and len(fields) == 11):
                raise MalformedEnvelope(wrong_shape)
            return fields
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(body))
        unpacker.feed(body)
        if unpacker.read_array_header() != 11:
            raise MalformedEnvelope(wrong_shape)
        values: list[Any] = []
        for _ in range(11):
            position = unpacker.tell()
            if position < len(body) and body[position] in _CONTAINER_MARKERS:
                raise MalformedEnvelope(f"{wrong_shape}: it nests an array or map")
            values.append(unpacker.unpack())
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedEnvelope(f"{wrong_shape}: not valid msgpack ({clip(str(exc))})") from exc
    if unpacker.tell() != len(body):
        raise MalformedEnvelope(f"{wrong_shape}: {len(body) - unpacker.tell()} bytes follow it")
    return values


def _expect(value: object, kind: type, name: str, *, size: int | None = None) -> None:
    if type(value) is not kind:  # exact type: a bool is not an int on this wire
        raise MalformedEnvelope(f"{name} must be {kind.__name__}, got {type(value).__name__}")
    if size is not None and len(value) != size:  # type: ignore[arg-type]
        raise MalformedEnvelope(f"{name} must be {size} bytes, got {len(value)}")  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class EnvelopePolicy:
    """What a receiver accepts. The defaults suit agents on ordinary NTP-synced machines.

    Attributes:
        max_frame_bytes: largest frame read at all (default 1 MiB).
        clock_skew: seconds a peer's clock may differ from ours (default 10 s).
        max_lifetime: longest expires-at minus sent-at accepted (default 10 min); bounds
            how long a message id must be remembered.
        replay_capacity: message ids remembered at most, across senders (default 100,000,
            ~20 MB); when full, the sender holding the most forgets its oldest, and its
            envelopes that expire before them are refused (see `aaex_agents.replay`).
        replay_senders: senders whose ids are remembered at once (default 1,000); each keeps
            at least its newest replay_capacity / replay_senders ids whatever others send.
        replay_floors: senders displaced from the replay window whose last sent-at is kept
            exactly (default 50,000, ~10 MB); beyond, floors share 8-byte slots.
    """

    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    clock_skew: float = 10.0
    max_lifetime: float = 600.0
    replay_capacity: int = 100_000
    replay_senders: int = 1_000
    replay_floors: int = 50_000

    def __post_init__(self) -> None:
        for name in ("max_frame_bytes", "clock_skew", "max_lifetime", "replay_capacity",
                     "replay_senders", "replay_floors"):
            value = getattr(self, name)
            if value <= 0:
                raise UsageError(f"EnvelopePolicy.{name} must be positive, got {value!r}")

    def new_replay_guard(self) -> ReplayGuard:
        """An empty replay guard sized by this policy (one per receiver)."""
        return ReplayGuard(capacity=self.replay_capacity, senders=self.replay_senders,
                           floors=self.replay_floors,
                           clock_skew_ms=int(self.clock_skew * 1000))


def check_times(envelope: Envelope, *, now: float, policy: EnvelopePolicy) -> None:
    """Check an envelope's dates against `now` and the policy; records nothing.

    Raises:
        EnvelopeExpired, EnvelopeFromFuture, LifetimeTooLong
    """
    now_ms = int(now * 1000)
    skew_ms = int(policy.clock_skew * 1000)
    if envelope.expires_at_ms + skew_ms < now_ms:
        raise EnvelopeExpired(
            f"{envelope.message_type} expired {(now_ms - envelope.expires_at_ms) / 1000:.1f} s ago")
    if envelope.sent_at_ms > now_ms + skew_ms:
        raise EnvelopeFromFuture(
            f"{envelope.message_type} is dated {(envelope.sent_at_ms - now_ms) / 1000:.1f} s "
            f"ahead of this clock (skew allowed: {policy.clock_skew} s)")
    if envelope.expires_at_ms - envelope.sent_at_ms > policy.max_lifetime * 1000:
        raise LifetimeTooLong(
            f"{envelope.message_type} asks to live "
            f"{(envelope.expires_at_ms - envelope.sent_at_ms) / 1000:.0f} s; at most "
            f"{policy.max_lifetime:.0f} s is accepted")


def remember(envelope: Envelope, *, now: float, replay: ReplayGuard) -> None:
    """Record an accepted envelope's id in `replay`; the last check, after every other one.

    Raises:
        ReplayedEnvelope: the id was already accepted, or the envelope is dated before what
            the guard has forgotten of its sender.
    """
    replay.admit(envelope.sender, envelope.message_id, envelope.sent_at_ms,
                 envelope.expires_at_ms, int(now * 1000))


def check_fresh(envelope: Envelope, *, now: float, policy: EnvelopePolicy,
                replay: ReplayGuard) -> None:
    """`check_times`, then `remember`: for a receiver with no checks after the dates.

    Verify first: a forged envelope must not be able to occupy the replay guard. A receiver
    that also checks the type and payload (the runtime) calls `remember` after those.

    Raises:
        EnvelopeExpired, EnvelopeFromFuture, LifetimeTooLong, ReplayedEnvelope
    """
    check_times(envelope, now=now, policy=policy)
    remember(envelope, now=now, replay=replay)
