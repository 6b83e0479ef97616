"""What a runtime keeps to seal and open frames: peers' keys and channel keys.

Outbound, every envelope to an AAEX agent is sealed (`aaex_agents.sealing`) to the
recipient's X25519 key: a hosted agent's own, else one learned before, else the one in its
signed agent record (`Directory.encryption_key`), else the one the agent itself answers to
a plaintext `KeyRequest`, signed by it like any reply. A runtime that keeps channels
(`SealingPolicy.channels`) seals the first envelope to a peer with HPKE and asks the peer to
keep its secret; once that exchange succeeded, later envelopes to the peer go under the
channel key until it has carried `channel_messages` envelopes or is `channel_age` seconds
old. A peer that no longer holds the channel refuses with `UnknownChannel`, and the
envelope is sealed anew with HPKE.

Inbound, a channel is kept only after its first envelope passed every check (signature,
dates, replay), so no forged frame takes room. Channels are held per sender, at most
`inbound_per_sender` each and `inbound_channels` in all (least recently used go first): a
peer that opens many channels pushes out its own first, and one that pushes out another's
only makes that sender pay one HPKE seal again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from .envelope import DEFAULT_MAX_FRAME_BYTES, Envelope
from .errors import UnknownChannel, UnsealedEnvelope, UsageError, WrongTarget, clip
from .hpke import PUBLIC_KEY_BYTES
from .identity import Identity
from .model import Message
from .sealing import (
    ChannelKeys,
    Opened,
    is_sealed,
    open_on_channel,
    open_request,
    peek,
    seal_on_channel,
    seal_request,
)


class KeyRequest(Message, type="aaex.key_request/1"):
    """Asks an agent for its encryption key. Sent in plaintext: it carries nothing secret."""


class KeyAnswer(Message, type="aaex.encryption_key/1"):
    """An agent's X25519 encryption key, in a reply signed by the agent itself."""

    key: bytes = Field(min_length=PUBLIC_KEY_BYTES, max_length=PUBLIC_KEY_BYTES)
    """The 32-byte public key to seal envelopes to."""


@dataclass(frozen=True, kw_only=True)
class SealingPolicy:
    """How a runtime seals what it sends and what it keeps for what it receives.

    Attributes:
        channels: keep a channel key per (hosted agent, peer) after the first HPKE seal
            (default True); False seals every envelope with HPKE (a fresh key each).
        channel_messages: envelopes one outbound channel key carries before a new one
            (default 100,000; with random 96-bit nonces, far under ChaCha20-Poly1305's bound).
        channel_age: seconds an outbound channel key is used before a new one (default 600).
        inbound_channels: channel keys held for senders, in all (default 10,000, ~3 MB).
        inbound_per_sender: channel keys held for one sender (default 16).
        known_keys: peers' encryption keys remembered (default 10,000).
        accept_plaintext: take signed envelopes that come unsealed (default True: older
            peers and tools that send hand-built frames; their reply goes back unsealed).
            False refuses all but the key request with `UnsealedEnvelope`; a node runs so.
    """

    channels: bool = True
    channel_messages: int = 100_000
    channel_age: float = 600.0
    inbound_channels: int = 10_000
    inbound_per_sender: int = 16
    known_keys: int = 10_000
    accept_plaintext: bool = True

    def __post_init__(self) -> None:
        for name in ("channel_messages", "channel_age", "inbound_channels",
                     "inbound_per_sender", "known_keys"):
            if getattr(self, name) <= 0:
                raise UsageError(f"SealingPolicy.{name} must be positive, got "
                                 f"{getattr(self, name)!r}")


@dataclass
class _Outbound:
    keys: ChannelKeys
    uses: int
    opened_at: float


@dataclass(frozen=True, slots=True)
class Sealed:
    """An outbound envelope as it goes on the wire, and the keys that open its reply."""

    frame: bytes
    keys: ChannelKeys
    on_channel: bool
    keep: bool


class Keyring:
    """Peers' keys and channel keys of one runtime (see the module docstring)."""

    def __init__(self, policy: SealingPolicy | None = None) -> None:
        self.policy = policy or SealingPolicy()
        self._keys: OrderedDict[str, bytes] = OrderedDict()
        self._outbound: dict[tuple[str, str], _Outbound] = {}
        self._opening: set[tuple[str, str]] = set()
        """Pairs whose channel-opening request is in flight: others go by HPKE meanwhile."""
        self._inbound: OrderedDict[tuple[str, str, bytes], ChannelKeys] = OrderedDict()
        self._per_sender: dict[str, OrderedDict[tuple[str, str, bytes], None]] = {}

    # -- peers' keys ---------------------------------------------------------------------
    def known_key(self, address: str) -> bytes | None:
        """The encryption key learned for `address`, if any."""
        return self._keys.get(address)

    def learn_key(self, address: str, key: bytes) -> None:
        """Remember `address`'s key (verified by the caller: signed record or signed reply)."""
        self._keys[address] = key
        self._keys.move_to_end(address)
        if len(self._keys) > self.policy.known_keys:
            self._keys.popitem(last=False)

    # -- outbound ------------------------------------------------------------------------
    def seal(self, frame: bytes, *, sender: str, target: str, key: bytes, now: float,
             fresh: bool = False) -> Sealed:
        """Seal `frame` on the pair's channel if one is usable (and not `fresh`), else HPKE."""
        pair = (sender, target)
        channel = None if fresh else self._outbound.get(pair)
        if channel is not None and (channel.uses >= self.policy.channel_messages
                                    or now - channel.opened_at >= self.policy.channel_age):
            del self._outbound[pair]
            channel = None
        if channel is not None:
            channel.uses += 1
            return Sealed(seal_on_channel(frame, sender=sender, target=target,
                                          keys=channel.keys), channel.keys, True, False)
        keep = self.policy.channels and pair not in self._opening
        if keep:
            self._opening.add(pair)
        wire, keys = seal_request(frame, sender=sender, target=target, recipient_key=key,
                                  keep=keep)
        return Sealed(wire, keys, False, keep)

    def settle(self, sealed: Sealed, *, sender: str, target: str, now: float,
               taken: bool) -> None:
        """Note that the exchange of `sealed` ended (call it once per `seal`, whatever happened).

        If the peer has `taken` a channel-opening request, its keys become the pair's channel.
        """
        if not sealed.keep:
            return
        self._opening.discard((sender, target))
        if taken:
            self._outbound[(sender, target)] = _Outbound(sealed.keys, 0, now)

    def forget_channel(self, sender: str, target: str) -> None:
        """Drop the pair's outbound channel (the peer refused it with `UnknownChannel`)."""
        self._outbound.pop((sender, target), None)

    # -- inbound -------------------------------------------------------------------------
    def open(self, frame: bytes, identity_of: Callable[[str], Identity | None], *,
             max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Opened:
        """Remove the seal of an inbound request (a plaintext frame passes as it is).

        Raises:
            OversizeFrame, MalformedEnvelope, BadSeal: see `aaex_agents.sealing`.
            WrongTarget: sealed to an agent that is not hosted here.
            UnknownChannel: sealed under a channel key this runtime does not hold.
        """
        if not is_sealed(frame):
            return Opened(frame)
        peeked = peek(frame, max_bytes=max_bytes)
        sender, target, key_id = peeked.sender, peeked.target, peeked.key_id
        recipient = identity_of(target)
        if recipient is None:
            raise WrongTarget(f"{clip(target)} is not hosted here")
        if key_id is None:
            return open_request(peeked, recipient)
        keys = self._inbound.get((sender, target, key_id))
        if keys is None:
            raise UnknownChannel(f"no channel {key_id.hex()[:8]} from {sender[:12]}.. is held "
                                 "here; seal to this agent's key instead")
        self._inbound.move_to_end((sender, target, key_id))
        return open_on_channel(peeked, keys)

    def admit(self, opened: Opened, envelope: Envelope) -> None:
        """Check that `envelope`, as `opened` from its frame, may be taken as it came.

        Raises:
            ReaddressedEnvelope: its signed addresses are not the seal's.
            UnsealedEnvelope: it came in plaintext, which this policy refuses (but for a
                key request, the one message that must come before a seal).
        """
        opened.check(envelope)
        if not (opened.sealed or self.policy.accept_plaintext
                or envelope.message_type == KeyRequest.message_type):
            raise UnsealedEnvelope(f"{envelope.message_type} came in plaintext; this agent "
                                   "takes only envelopes sealed to its key")

    def keep(self, opened: Opened) -> None:
        """Hold a new channel once its first envelope passed every check."""
        if not opened.new_channel or opened.keys is None:
            return
        entry = (opened.sender, opened.target, opened.keys.key_id)
        if entry in self._inbound:
            return
        own = self._per_sender.get(opened.sender)
        if own is not None and len(own) >= self.policy.inbound_per_sender:
            self._drop(next(iter(own)))  # the sender's oldest
        if len(self._inbound) >= self.policy.inbound_channels:
            self._drop(next(iter(self._inbound)))
        self._inbound[entry] = opened.keys
        self._per_sender.setdefault(opened.sender, OrderedDict())[entry] = None

    def _drop(self, entry: tuple[str, str, bytes]) -> None:
        del self._inbound[entry]
        own = self._per_sender[entry[0]]
        del own[entry]
        if not own:
            del self._per_sender[entry[0]]

    @property
    def inbound_channels(self) -> int:
        """Channel keys held for senders now."""
        return len(self._inbound)
