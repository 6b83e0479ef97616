"""The uAgents wire format (uagents-core 0.4.12), and AAEX's rules applied to it.

What crosses the wire is a JSON envelope::

    {"version": 1, "sender": "agent1...", "target": "agent1...", "session": "<uuid4>",
     "schema_digest": "model:<hex>", "protocol_digest": "proto:<hex>" | null,
     "payload": "<base64 of the message JSON>", "expires": <unix s> | null,
     "nonce": <int> | null, "signature": "sig1..." | null}

The signature is ECDSA on secp256k1 over ``sha256(sender || target || session ||
schema_digest || payload? || u64be(expires)? || u64be(nonce)?)`` (a null field is left out;
`version` and `protocol_digest` are not covered), written as bech32 ``sig1`` over ``r || s``.
uAgents signs with python-ecdsa and does not normalise s, so about half of its signatures are
"high-s", which libsecp256k1 refuses as sent: `verify_digest` folds s into the low half
first, which changes nothing about what was signed.

A uAgents message type is named by a digest of its pydantic-v1 JSON schema, not by a chosen
name, so AAEX never derives one from the other: a `SchemaTable` maps AAEX type names to
digests computed by uagents-core (the chat protocol's are built in).

uAgents checks neither expiry nor replay. AAEX does (`admit`): a signature is required, an
expiry is required, the lifetime is bounded, and an envelope is accepted once. Its replay
id is the signed digest, never the signature: ECDSA signatures are malleable (s and n - s
both verify), so a signature-based id would let anyone replay an envelope with the other s.
Replay state is kept per sender, in the same bounded `ReplayGuard` AAEX envelopes use, so a
flood from fresh keys cannot lock other senders out (see `admit` for the one difference).

Parsing runs for anyone who can connect, before the signature is checked, so its work is
bounded by the body's length at C speed: pydantic-core parses the JSON, and every string
field the checks before the signature read (addresses, signature, digests) has a maximum
length, enforced before any of them is decoded. A 900 kB `sender` is refused as
``malformed`` at once instead of being bech32-decoded in Python.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Mapping
from typing import Annotated

import coincurve
from coincurve.ecdsa import cdata_to_der, deserialize_compact
from pydantic import BaseModel, ConfigDict, StrictInt, StringConstraints, ValidationError

from ..address import bech32_decode, bech32_encode
from ..envelope import EnvelopePolicy
from ..errors import (
    BadSignature,
    EnvelopeExpired,
    LifetimeTooLong,
    MalformedEnvelope,
    MissingExpiry,
    OversizeFrame,
    UnsignedEnvelope,
    UsageError,
)
from ..identity import Identity
from ..model import Message, require_type_name
from ..replay import ReplayGuard
from ..transport.bodies import parse_json

AGENT_PREFIX = "agent"
SIGNATURE_PREFIX = "sig"
USER_PREFIX = "user"
KEY_DOMAIN = b"aaex/uagents-key/1"
"""Domain tag of the secp256k1 key derived from an agent's Ed25519 seed."""

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = SECP256K1_ORDER // 2
_PUBLIC_KEY_BYTES = 33
_DIGEST_PATTERN = re.compile(r"^model:[0-9a-f]{64}\Z")
_ADDRESS_CHARS = len(AGENT_PREFIX) + 1 + (_PUBLIC_KEY_BYTES * 8 + 4) // 5 + 6  # bech32: 65
_SIGNATURE_CHARS = len(SIGNATURE_PREFIX) + 1 + (64 * 8 + 4) // 5 + 6  # 113
_DIGEST_CHARS = len("model:") + 64  # schema and protocol digests: 70

# Schema digests computed by uagents-core 0.4.12 (tests pin them against it).
CHAT_MESSAGE_DIGEST = "model:2601825997203ee07dbb9ff6e7c71ae7bdaf6a7c8b817361f2f88f4b29c68d0c"
CHAT_ACK_DIGEST = "model:741eb75692abbeb43c131e364ad939af23f14e8288ba0ec3df130843ef79bd7f"
CHAT_PROTOCOL_DIGEST = "proto:30a801ed3a83f9a0ff0a9f1e6fe958cb91da1fc2218b153df7b6cbf87bd33d62"
ERROR_MESSAGE_DIGEST = "model:94cb082f79871c5e80a20637f935d233f0ce11a135d5a3a3c6071e81102a84d5"
"""uagents-core's ``ErrorMessage {error: str}``: what a sync query answers when it times out."""


# -- keys and addresses -----------------------------------------------------------------
def uagents_address(public_key: bytes) -> str:
    """The ``agent1...`` address of a 33-byte compressed secp256k1 public key."""
    if len(public_key) != _PUBLIC_KEY_BYTES:
        raise UsageError(f"a compressed secp256k1 public key is {_PUBLIC_KEY_BYTES} bytes, "
                         f"got {len(public_key)}")
    return bech32_encode(AGENT_PREFIX, public_key)


def public_key_of(address: str) -> bytes:
    """The compressed public key inside an ``agent1...`` address.

    Raises:
        UsageError: not an ``agent1`` address (the message says what is wrong).
    """
    try:
        prefix, data = bech32_decode(address)
    except ValueError as exc:
        raise UsageError(f"{address[:24]!r} is not a uAgents address: {exc}") from None
    if prefix != AGENT_PREFIX or len(data) != _PUBLIC_KEY_BYTES:
        raise UsageError(f"{address[:24]!r} is not a uAgents address: it must be 'agent1' "
                         f"and a {_PUBLIC_KEY_BYTES}-byte key")
    return data


def is_uagents_address(text: object) -> bool:
    """True when `text` is a well-formed ``agent1...`` address."""
    if not isinstance(text, str) or not text.startswith(AGENT_PREFIX + "1"):
        return False
    try:
        public_key_of(text)
    except UsageError:
        return False
    return True


class UAgentsKey:
    """A secp256k1 signing key and its ``agent1...`` address.

    An AAEX agent's key is derived from its Ed25519 seed (`from_identity`): one secret, two
    addresses, no new key file.
    """

    __slots__ = ("_key", "address", "public_key")

    def __init__(self, secret: bytes) -> None:
        scalar = int.from_bytes(secret, "big") if len(secret) == 32 else 0
        if not 0 < scalar < SECP256K1_ORDER:
            raise UsageError("a secp256k1 secret is 32 bytes, between 1 and the curve order - 1")
        self._key = coincurve.PrivateKey(secret)
        self.public_key: bytes = self._key.public_key.format(compressed=True)
        self.address: str = uagents_address(self.public_key)

    @classmethod
    def from_identity(cls, identity: Identity) -> UAgentsKey:
        """The uAgents key of an AAEX identity: sha256(KEY_DOMAIN || seed) mod n."""
        digest = hashlib.sha256(KEY_DOMAIN + identity.export_seed()).digest()
        scalar = int.from_bytes(digest, "big") % SECP256K1_ORDER
        return cls(scalar.to_bytes(32, "big"))  # scalar 0 has probability ~2^-256

    def sign_digest(self, digest: bytes) -> str:
        """The ``sig1...`` signature of a 32-byte digest (deterministic, low-s)."""
        if len(digest) != 32:
            raise UsageError(f"sign_digest takes a 32-byte digest, got {len(digest)} bytes")
        compact = self._key.sign_recoverable(digest, hasher=None)[:64]
        return bech32_encode(SIGNATURE_PREFIX, compact)

    def __repr__(self) -> str:
        return f"<UAgentsKey {self.address}>"


def verify_digest(address: str, digest: bytes, signature: str) -> bool:
    """True when `signature` is `address`'s signature of `digest`; high-s is accepted.

    False for any malformed signature or address, never an exception.
    """
    try:
        public_key = public_key_of(address)
        prefix, compact = bech32_decode(signature)
    except (UsageError, ValueError):
        return False
    if prefix != SIGNATURE_PREFIX or len(compact) != 64 or len(digest) != 32:
        return False
    r = int.from_bytes(compact[:32], "big")
    s = int.from_bytes(compact[32:], "big")
    if not (0 < r < SECP256K1_ORDER and 0 < s < SECP256K1_ORDER):
        return False
    if s > _HALF_ORDER:  # python-ecdsa does not normalise; libsecp256k1 wants low s
        compact = compact[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big")
    try:
        der = cdata_to_der(deserialize_compact(compact))
        return bool(coincurve.PublicKey(public_key).verify(der, digest, hasher=None))
    except ValueError:
        return False


# -- sessions -----------------------------------------------------------------------------
def session_uuid(session: bytes | None) -> uuid.UUID:
    """The uAgents session (a UUID version 4) for an AAEX session id.

    uAgents refuses other UUID versions, so the version and variant bits of the 16 AAEX
    bytes are set; a session that came from uAgents maps to itself.
    """
    if session is None:
        return uuid.uuid4()
    if len(session) != 16:
        raise UsageError(f"a session id is 16 bytes, got {len(session)}")
    return uuid.UUID(bytes=session, version=4)


# -- envelopes ----------------------------------------------------------------------------
class UEnvelope(BaseModel):
    """A uAgents envelope as it travels. Unknown extra fields are ignored, as uAgents does."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: StrictInt
    sender: Annotated[str, StringConstraints(max_length=_ADDRESS_CHARS)]
    target: Annotated[str, StringConstraints(max_length=_ADDRESS_CHARS)]
    session: uuid.UUID
    schema_digest: Annotated[str, StringConstraints(max_length=_DIGEST_CHARS)]
    protocol_digest: Annotated[str, StringConstraints(max_length=_DIGEST_CHARS)] | None = None
    payload: str | None = None
    expires: StrictInt | None = None
    nonce: StrictInt | None = None
    signature: Annotated[str, StringConstraints(max_length=_SIGNATURE_CHARS)] | None = None

    def digest(self) -> bytes:
        """What the sender signs (see the module docstring)."""
        hasher = hashlib.sha256()
        hasher.update(self.sender.encode())
        hasher.update(self.target.encode())
        hasher.update(str(self.session).encode())
        hasher.update(self.schema_digest.encode())
        if self.payload is not None:
            hasher.update(self.payload.encode())
        if self.expires is not None:
            hasher.update(struct.pack(">Q", self.expires))
        if self.nonce is not None:
            hasher.update(struct.pack(">Q", self.nonce))
        return hasher.digest()

    def verify(self) -> bool:
        """True when the sender's secp256k1 key signed this envelope."""
        return self.signature is not None and verify_digest(self.sender, self.digest(),
                                                            self.signature)

    def payload_json(self) -> str:
        """The message JSON inside the payload ("" when there is none).

        Raises:
            MalformedEnvelope: the payload is not base64 of UTF-8 text.
        """
        if self.payload is None:
            return ""
        try:
            return base64.b64decode(self.payload, validate=True).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEnvelope(f"payload is not base64 of UTF-8 JSON: {exc}") from None

    def to_json(self) -> bytes:
        """The wire form."""
        return self.model_dump_json().encode()

    def __repr__(self) -> str:
        return (f"<UEnvelope {self.schema_digest[:14]} {self.sender[:12]}..->"
                f"{self.target[:12]}.. session={str(self.session)[:8]}>")


def parse_envelope(data: bytes | str, *, max_bytes: int) -> UEnvelope:
    """Decode the structure of a uAgents envelope without trusting it.

    Raises:
        OversizeFrame: longer than `max_bytes`.
        MalformedEnvelope: not JSON, not the envelope schema, a string field longer than
            any valid one (an address: 65 characters, a signature: 113, a digest: 70), or a
            session that is not a UUID version 4 (uAgents refuses those too); the message
            names the field.
    """
    if len(data) > max_bytes:
        raise OversizeFrame(f"envelope of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        envelope = UEnvelope.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise MalformedEnvelope(f"not a uAgents envelope: {where}: {first['msg']}") from None
    if envelope.session.version != 4:
        raise MalformedEnvelope(f"session {envelope.session} is not a UUID version 4")
    return envelope


def seal_envelope(key: UAgentsKey | None, *, sender: str | None = None, target: str,
                  schema_digest: str, payload_json: str, session: uuid.UUID,
                  expires: int | None, protocol_digest: str | None = None,
                  nonce: int | None = None) -> UEnvelope:
    """Build an envelope from `key`'s address to `target` and sign it.

    With `key` None it is left unsigned from `sender` (what a uAgents sync reply looks like;
    for tests and tools only).

    Raises:
        UsageError: `target` is not an ``agent1`` address, or neither key nor sender given.
    """
    public_key_of(target)
    origin = key.address if key is not None else sender
    if origin is None:
        raise UsageError("seal_envelope needs a key to sign with, or an unsigned sender")
    envelope = UEnvelope(version=1, sender=origin, target=target, session=session,
                         schema_digest=schema_digest, protocol_digest=protocol_digest,
                         payload=base64.b64encode(payload_json.encode()).decode(),
                         expires=expires, nonce=nonce)
    if key is None:
        return envelope
    return envelope.model_copy(update={"signature": key.sign_digest(envelope.digest())})


def admit(envelope: UEnvelope, *, now: float, policy: EnvelopePolicy,
          replay: ReplayGuard) -> None:
    """AAEX's rules for an inbound uAgents envelope, in this order.

    Signed (and the signature verifies), an expiry, not expired, a lifetime no longer than
    `policy.max_lifetime`, and not seen before. The signature comes first so that a forged
    envelope can never occupy the replay window.

    `replay` is per sender (`policy.new_replay_guard()`), as for AAEX envelopes. A uAgents
    envelope carries no sent-at, so its signed expiry stands in for it: once a sender has
    been displaced from the guard (by `policy.replay_senders` newer senders), its envelopes
    expiring at or before the latest one accepted from it are refused. An envelope signed
    later expires later, unless both fall in the same second with the same lifetime.

    Raises:
        UnsignedEnvelope, BadSignature, MissingExpiry, EnvelopeExpired, LifetimeTooLong,
        ReplayedEnvelope
    """
    if envelope.signature is None or envelope.sender.startswith(USER_PREFIX):
        raise UnsignedEnvelope(f"envelope from {envelope.sender[:24]} is not signed; AAEX "
                               "agents take only signed uAgents traffic")
    if not envelope.verify():
        raise BadSignature(f"signature of {envelope.schema_digest[:14]} from "
                           f"{envelope.sender} does not verify")
    if envelope.expires is None:
        raise MissingExpiry(f"envelope from {envelope.sender} has no expiry; set `expires` "
                            "(uAgents' ctx.send does)")
    expires_ms = envelope.expires * 1000
    now_ms = int(now * 1000)
    skew_ms = int(policy.clock_skew * 1000)
    if expires_ms + skew_ms < now_ms:
        raise EnvelopeExpired(f"envelope from {envelope.sender} expired "
                              f"{(now_ms - expires_ms) / 1000:.1f} s ago")
    if expires_ms - now_ms > policy.max_lifetime * 1000 + skew_ms:
        raise LifetimeTooLong(f"envelope from {envelope.sender} asks to live "
                              f"{(expires_ms - now_ms) / 1000:.0f} s; at most "
                              f"{policy.max_lifetime:.0f} s is accepted")
    replay.admit(envelope.sender, envelope.digest(), expires_ms, expires_ms, now_ms)


# -- message types ------------------------------------------------------------------------
class SchemaTable:
    """AAEX message types and the uAgents schema digests they travel under, both ways.

    Digests come from uagents-core (``Model.build_schema_digest(MyModel)``) and are written
    down here; they are never computed from the AAEX class, whose schema differs.

        table = SchemaTable({Ping: "model:64d8...", Pong: "model:1622..."})

    Raises:
        UsageError: a digest is not ``model:`` and 64 hex digits, a class has no type name, or
            one digest or type is listed twice.
    """

    def __init__(self, entries: Mapping[type[Message], str] | None = None, *,
                 protocols: Mapping[type[Message], str] | None = None) -> None:
        self._digest_by_type: dict[str, str] = {}
        self._class_by_digest: dict[str, type[Message]] = {}
        self._protocol_by_type: dict[str, str] = {}
        for cls, digest in (entries or {}).items():
            self.add(cls, digest, protocol=(protocols or {}).get(cls))

    def add(self, cls: type[Message], digest: str, *, protocol: str | None = None) -> None:
        """Map `cls` to `digest` (and, optionally, the protocol digest sent with it)."""
        name = require_type_name(cls)
        if not isinstance(digest, str) or not _DIGEST_PATTERN.match(digest):
            raise UsageError(f"{cls.__name__}: schema digest {digest!r} is not 'model:' and 64 "
                             "hex digits; compute it with uagents-core's "
                             "Model.build_schema_digest(YourModel)")
        known = self._class_by_digest.get(digest)
        if (known is not None and known is not cls) or self._digest_by_type.get(
                name, digest) != digest:
            raise UsageError(f"{cls.__name__}: {digest[:14]}... or {name} is already mapped")
        self._digest_by_type[name] = digest
        self._class_by_digest[digest] = cls
        if protocol is not None:
            self._protocol_by_type[name] = protocol

    def merged(self, other: SchemaTable) -> SchemaTable:
        """A new table with this one's entries and `other`'s."""
        table = SchemaTable()
        for source in (self, other):
            for digest, cls in source._class_by_digest.items():
                table.add(cls, digest, protocol=source._protocol_by_type.get(str(cls.message_type)))
        return table

    def digest_of(self, cls: type[Message]) -> str:
        """The schema digest `cls` travels under.

        Raises:
            UsageError: `cls` is not in the table; the message says how to add it.
        """
        name = require_type_name(cls)
        digest = self._digest_by_type.get(name)
        if digest is None:
            raise UsageError(f"{cls.__name__} ({name}) has no uAgents schema digest; add it, "
                             "e.g. SchemaTable({" + cls.__name__ + ": \"model:...\"}) or "
                             f"[interop.uagents.schemas] \"{name}\" = \"model:...\"")
        return digest

    def protocol_of(self, cls: type[Message]) -> str | None:
        """The protocol digest sent with `cls`, if one is known."""
        return self._protocol_by_type.get(str(cls.message_type))

    def class_for(self, digest: str) -> type[Message] | None:
        """The AAEX message class for a schema digest, or None if the table has none."""
        return self._class_by_digest.get(digest)

    def items(self) -> list[tuple[type[Message], str]]:
        """Every (class, digest) pair."""
        return [(cls, digest) for digest, cls in self._class_by_digest.items()]

    def __len__(self) -> int:
        return len(self._class_by_digest)

    def __repr__(self) -> str:
        return f"<SchemaTable {len(self)} types>"


def error_json(text: str) -> str:
    """The JSON of uagents-core's ``ErrorMessage`` with `text`."""
    return json.dumps({"error": text})


def peer_reason(status: int, body: bytes) -> tuple[str, str]:
    """The rejection reason of a peer's 400: ours carry `reason`, uAgents' only `error`."""
    text = body[:300].decode(errors="replace")
    try:
        document = parse_json(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        if isinstance(document.get("reason"), str):
            return document["reason"], str(document.get("error", ""))
        text = str(document.get("error", text))
    if status == 413:
        return "oversize", text
    lowered = text.lower()
    if "route" in lowered:
        return "wrong_target", text
    if "schema" in lowered:
        return "malformed", text
    if "signature" in lowered or "verif" in lowered:
        return "bad_signature", text
    return "rejected", text
