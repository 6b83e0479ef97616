"""Sealed frames: a signed envelope encrypted to its recipient (sign-then-encrypt).

The sender signs the envelope as always (`envelope.seal`), then encrypts the whole signed
frame to the recipient, so a relay, a proxy or a log between two nodes sees the two
addresses and a length, never the message type, ids, session or payload. Three wire forms,
each a msgpack array whose first element is its tag::

    ["aaex/sealed/1", sender, target, hpke]            request, HPKE to the target's key
    ["aaex/channel/1", sender, target, key_id, nonce, ciphertext]   request, channel key
    ["aaex/sealed-reply/1", sender, target, nonce, ciphertext]      reply to either

`hpke` is RFC 9180 base mode (`aaex_agents.hpke`) with ``info = tag 0 sender 0 target``;
its plaintext is ``keep (1 byte) || secret (32) || signed frame``. `secret` is fresh per
sealed request: the receiver derives from it (HKDF-SHA256, salted with the key id, bound
to both addresses) the ChaCha20-Poly1305 key of the reply, and, when the sender asked to
`keep` it, the key of a channel: later requests from that sender to that target sealed
under it, named by `key_id` (the first 16 bytes of SHA-256 of the HPKE ephemeral key),
each with a random 96-bit nonce and the tag, addresses and key id as associated data. So
the key is fresh per message (HPKE) or per channel (kept, rotated by the sender).

Why the signature sits inside: the receiver verifies the envelope after opening it. The
signature covers the target, so a recipient that opened a message cannot seal it on to a
third agent as if it had been sent there (`ReaddressedEnvelope`), and the outer addresses,
bound into the HPKE info or the AEAD's associated data, must equal the signed ones. A
signature over the ciphertext instead would have to leave the sender's identity and the
message's metadata readable and would not stop that forwarding. The cost is that a forged
frame costs the receiver one X25519 agreement (~50 µs) before it is refused, as a forged
signature costs one verification.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .address import ADDRESS_LENGTH
from .envelope import Envelope
from .errors import (
    BadSeal,
    MalformedEnvelope,
    OversizeFrame,
    ReaddressedEnvelope,
    UnsealedEnvelope,
    UsageError,
    quote,
)
from .hpke import ENC_BYTES, seal_to
from .identity import Identity

SEALED_TAG = "aaex/sealed/1"
CHANNEL_TAG = "aaex/channel/1"
REPLY_TAG = "aaex/sealed-reply/1"
KEY_ID_BYTES = 16
NONCE_BYTES = 12
SECRET_BYTES = 32
SEAL_OVERHEAD_BYTES = 192
"""Bytes a sealed request adds to its signed frame at most (tag, addresses, HPKE enc and
tag, secret): a sender keeps its frames this much under the receiver's frame limit."""

_PLAIN_PAIR = 0x92  # msgpack fixarray of 2: a signed ``[body, signature]`` frame
_ARRAY_OF = {0x94: SEALED_TAG, 0x95: REPLY_TAG, 0x96: CHANNEL_TAG}


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    """The two AEAD keys one sealed request sets up: requests on its channel, and replies."""

    key_id: bytes
    requests: ChaCha20Poly1305
    replies: ChaCha20Poly1305


def derive_channel(secret: bytes, key_id: bytes, sender: str, target: str) -> ChannelKeys:
    """The channel keys of `secret`, bound to its id and to who sends to whom."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=key_id,
               info=_binding("aaex/channel-keys/1", sender, target)).derive(secret)
    return ChannelKeys(key_id, ChaCha20Poly1305(okm[:32]), ChaCha20Poly1305(okm[32:]))


def _binding(tag: str, sender: str, target: str) -> bytes:
    return f"{tag}\x00{sender}\x00{target}".encode()


# -- sender ---------------------------------------------------------------------------------
def seal_request(frame: bytes, *, sender: str, target: str, recipient_key: bytes,
                 keep: bool) -> tuple[bytes, ChannelKeys]:
    """Seal the signed `frame` to `recipient_key`; return the wire frame and its keys.

    The keys open the reply and, if `keep`, seal later requests on this channel.

    Raises:
        UsageError: `recipient_key` is not an X25519 public key.
    """
    secret = os.urandom(SECRET_BYTES)
    hpke = seal_to(recipient_key, bytes([keep]) + secret + frame,
                   info=_binding(SEALED_TAG, sender, target))
    key_id = hashlib.sha256(hpke[:ENC_BYTES]).digest()[:KEY_ID_BYTES]
    wire: bytes = msgpack.packb([SEALED_TAG, sender, target, hpke])
    return wire, derive_channel(secret, key_id, sender, target)


def seal_on_channel(frame: bytes, *, sender: str, target: str, keys: ChannelKeys) -> bytes:
    """Seal the signed `frame` under a kept channel's request key."""
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = keys.requests.encrypt(nonce, frame,
                                       _binding(CHANNEL_TAG, sender, target) + keys.key_id)
    wire: bytes = msgpack.packb([CHANNEL_TAG, sender, target, keys.key_id, nonce, ciphertext])
    return wire


def open_reply(frame: bytes, keys: ChannelKeys, *, replier: str, asker: str) -> bytes:
    """The signed reply frame inside a sealed reply from `replier` to `asker`.

    Raises:
        UnsealedEnvelope: the reply came back in plaintext.
        MalformedEnvelope: not a sealed reply.
        BadSeal: it does not open under the request's reply key for these addresses.
    """
    if frame[:1] == bytes([_PLAIN_PAIR]):
        raise UnsealedEnvelope("the reply to a sealed request came back in plaintext")
    tag, fields = _outer(frame)
    if tag != REPLY_TAG:
        raise MalformedEnvelope(f"a {tag} frame where a sealed reply was expected")
    sender, target, nonce, ciphertext = fields
    if (sender, target) != (replier, asker):
        raise ReaddressedEnvelope(f"the sealed reply is from {sender[:12]}.. to {target[:12]}.., "
                                  f"not from {replier[:12]}.. to {asker[:12]}..")
    try:
        inner: bytes = keys.replies.decrypt(nonce, ciphertext,
                                            _binding(REPLY_TAG, sender, target))
    except InvalidTag:
        raise BadSeal("sealed reply does not open: it was altered, or answers another "
                      "request") from None
    return inner


# -- receiver -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Opened:
    """An inbound frame with its seal removed: the signed frame and how to answer it.

    `keys` is None for a plaintext frame (its reply goes back in plaintext); `new_channel`
    is true when the sender asked the receiver to keep `keys` for its later requests.
    """

    frame: bytes
    sender: str = ""
    target: str = ""
    keys: ChannelKeys | None = None
    new_channel: bool = False

    @property
    def sealed(self) -> bool:
        """Whether the frame came sealed."""
        return self.keys is not None

    def check(self, envelope: Envelope) -> None:
        """Raise ReaddressedEnvelope unless the signed envelope names the seal's addresses."""
        if self.keys is not None and (envelope.sender, envelope.target) != (self.sender,
                                                                            self.target):
            raise ReaddressedEnvelope(
                f"sealed from {self.sender[:12]}.. to {self.target[:12]}.., but the signed "
                f"envelope inside is from {envelope.sender[:12]}.. to {envelope.target[:12]}..")

    def seal_reply(self, reply_frame: bytes) -> bytes:
        """The reply as it goes back: sealed under the request's reply key, if it came sealed."""
        if self.keys is None:
            return reply_frame
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self.keys.replies.encrypt(nonce, reply_frame,
                                               _binding(REPLY_TAG, self.target, self.sender))
        wire: bytes = msgpack.packb([REPLY_TAG, self.target, self.sender, nonce, ciphertext])
        return wire


def is_sealed(frame: bytes) -> bool:
    """Whether `frame` is one of the sealed forms (not a plaintext ``[body, signature]``)."""
    return frame[:1] != bytes([_PLAIN_PAIR])


def open_request(frame: bytes | Peeked, recipient: Identity) -> Opened:
    """Open an HPKE-sealed request to `recipient` (whose address the frame's target is).

    Raises:
        MalformedEnvelope: not a sealed request.
        BadSeal: it does not open for `recipient` from the named sender.
    """
    tag, fields = frame if isinstance(frame, Peeked) else _outer(frame)
    if tag != SEALED_TAG:
        raise MalformedEnvelope(f"a {tag} frame where a sealed request was expected")
    sender, target, hpke = fields
    if target != recipient.address:
        raise UsageError("open_request takes the identity the frame is addressed to")
    plaintext = recipient.open_sealed(hpke, info=_binding(SEALED_TAG, sender, target))
    if len(plaintext) < 1 + SECRET_BYTES or plaintext[0] not in (0, 1):
        raise BadSeal("sealed request opened, but its contents are not a sealed envelope")
    key_id = hashlib.sha256(hpke[:ENC_BYTES]).digest()[:KEY_ID_BYTES]
    keys = derive_channel(plaintext[1:1 + SECRET_BYTES], key_id, sender, target)
    return Opened(plaintext[1 + SECRET_BYTES:], sender, target, keys, plaintext[0] == 1)


def open_on_channel(frame: bytes | Peeked, keys: ChannelKeys) -> Opened:
    """Open a request sealed under the channel `keys` (found from what `peek` read).

    Raises:
        MalformedEnvelope: not a channel request.
        BadSeal: it does not open under `keys` for the named addresses.
    """
    tag, fields = frame if isinstance(frame, Peeked) else _outer(frame)
    if tag != CHANNEL_TAG:
        raise MalformedEnvelope(f"a {tag} frame where a channel request was expected")
    sender, target, key_id, nonce, ciphertext = fields
    try:
        inner: bytes = keys.requests.decrypt(nonce, ciphertext,
                                             _binding(CHANNEL_TAG, sender, target) + key_id)
    except InvalidTag:
        raise BadSeal("channel request does not open: it was altered, or sealed for another "
                      "sender or recipient") from None
    return Opened(inner, sender, target, keys)


class Peeked(NamedTuple):
    """A sealed request's outer fields, read once and checked for type and size."""

    tag: str
    fields: list[Any]

    @property
    def sender(self) -> str:
        """Who the seal says sent it."""
        return str(self.fields[0])

    @property
    def target(self) -> str:
        """Whom the seal says it is for."""
        return str(self.fields[1])

    @property
    def key_id(self) -> bytes | None:
        """The channel key's id; None for an HPKE-sealed request."""
        return bytes(self.fields[2]) if self.tag == CHANNEL_TAG else None


def peek(frame: bytes, *, max_bytes: int) -> Peeked:
    """Read a sealed request's outer fields without opening it.

    Raises:
        OversizeFrame: longer than `max_bytes`.
        MalformedEnvelope: not a sealed request.
    """
    if len(frame) > max_bytes:
        raise OversizeFrame(f"frame of {len(frame)} bytes exceeds the limit of {max_bytes}")
    tag, fields = _outer(frame)
    if tag not in (SEALED_TAG, CHANNEL_TAG):
        raise MalformedEnvelope(f"a {tag} frame is not a request")
    return Peeked(tag, fields)


_SHAPES: dict[str, tuple[tuple[str, int | None], ...]] = {
    SEALED_TAG: (("sender", None), ("target", None), ("hpke", None)),
    CHANNEL_TAG: (("sender", None), ("target", None), ("key_id", KEY_ID_BYTES),
                  ("nonce", NONCE_BYTES), ("ciphertext", None)),
    REPLY_TAG: (("sender", None), ("target", None), ("nonce", NONCE_BYTES),
                ("ciphertext", None)),
}


def _outer(frame: bytes) -> tuple[str, list[Any]]:
    """Decode a sealed form's fields, each checked for type and size; nothing is opened."""
    tag = _ARRAY_OF.get(frame[0]) if frame else None
    if tag is None:
        raise MalformedEnvelope("frame is neither a signed [body, signature] pair nor sealed")
    try:
        fields = msgpack.unpackb(frame, raw=False, max_array_len=6, max_map_len=0)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedEnvelope(f"sealed frame is not valid msgpack ({quote(str(exc))})") from exc
    shape = _SHAPES[tag]
    if not (isinstance(fields, list) and len(fields) == len(shape) + 1 and fields[0] == tag):
        raise MalformedEnvelope(f"sealed frame is not a {tag} array of {len(shape) + 1} fields")
    for value, (name, size) in zip(fields[1:], shape, strict=True):
        if name in ("sender", "target"):
            # Length only: the seal binds both addresses and the signed envelope inside
            # checks them in full, so a forged one fails there and costs no checksum here.
            if type(value) is not str or len(value) != ADDRESS_LENGTH:
                raise MalformedEnvelope(f"sealed frame's {name} is not an AAEX address")
        elif type(value) is not bytes or (size is not None and len(value) != size):
            raise MalformedEnvelope(f"sealed frame's {name} must be "
                                    f"{'bytes' if size is None else f'{size} bytes'}")
    return tag, fields[1:]
