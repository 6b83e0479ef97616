"""Every envelope between two AAEX agents is sealed to its recipient; altered or re-addressed
sealed frames are refused with a reason, and what a relay sees holds no plaintext."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgpack
import pytest

from aaex_agents import (
    Agent,
    Context,
    Message,
    PeerRejected,
    StaticDirectory,
    UnexpectedReply,
    handler,
    open_runtime,
)
from aaex_agents.envelope import decode_frame, seal
from aaex_agents.errors import (
    BadSeal,
    EnvelopeRejected,
    ReaddressedEnvelope,
    UnknownMessageType,
)
from aaex_agents.identity import Identity
from aaex_agents.keyring import KeyAnswer, KeyRequest, Keyring, SealingPolicy
from aaex_agents.model import decode_payload
from aaex_agents.runtime import Runtime, RuntimeConfig
from aaex_agents.sealing import (
    CHANNEL_TAG,
    REPLY_TAG,
    SEALED_TAG,
    open_reply,
    open_request,
    seal_on_channel,
    seal_request,
)
from aaex_agents.transport.libp2p import (
    Libp2pConfig,
    Libp2pHost,
    Libp2pTransport,
    open_libp2p_host,
)
from aaex_agents.transport.memory import Deliver, MemoryNetwork

MARKER = "marker-7f3a9c-never-in-the-clear"


class Task(Message, type="test_sealing.task/1"):
    text: str


class Done(Message, type="test_sealing.done/1"):
    text: str


class Worker(Agent):
    def __init__(self, identity: Identity | None = None) -> None:
        super().__init__(identity, name="worker")
        self.seen: list[str] = []

    @handler
    async def on_task(self, ctx: Context, msg: Task) -> Done:
        self.seen.append(msg.text)
        return Done(text=f"done: {msg.text}")


class Caller(Agent):
    pass


class Wiretap:
    """A route that keeps every byte either way, as a relay or a log between nodes would."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    async def __call__(self, endpoint: str, frame: bytes, deliver: Deliver) -> bytes | None:
        self.frames.append(frame)
        reply = await deliver(frame)
        if reply is not None:
            self.frames.append(reply)
        return reply

    def tags(self) -> list[str]:
        return [msgpack.unpackb(f, raw=False)[0] if f[0] != 0x92 else "plaintext"
                for f in self.frames]


@asynccontextmanager
async def pair(network: MemoryNetwork, *, worker: Worker | None = None, channels: bool = True,
               publish_key: bool = True) -> AsyncIterator[tuple[Runtime, Runtime, Worker, Caller]]:
    worker = worker or Worker()
    caller = Caller()
    directory = StaticDirectory()
    config = RuntimeConfig(sealing=SealingPolicy(channels=channels))
    async with open_runtime(worker, transports=[network.transport("w")]) as serving, \
            open_runtime(caller, transports=[network.transport("c")], directory=directory,
                         config=config) as asking:
        directory.add(worker.address, *serving.endpoints, encryption_key=(
            worker.identity.encryption_public_key if publish_key else None))
        yield serving, asking, worker, caller


async def test_a_relay_sees_no_plaintext_and_the_key_is_fetched_signed() -> None:
    tap = Wiretap()
    async with pair(MemoryNetwork(route=tap), publish_key=False) as (_, asking, worker, caller):
        for n in range(3):
            reply = await asking.context(caller).ask(worker.address, Task(text=f"{MARKER} {n}"))
            assert reply == Done(text=f"done: {MARKER} {n}")
    assert worker.seen == [f"{MARKER} {n}" for n in range(3)]
    # The key request and its signed answer are the only plaintext; then HPKE, then the
    # channel the first sealed request opened, each answered with a sealed reply.
    assert tap.tags() == ["plaintext", "plaintext", SEALED_TAG, REPLY_TAG,
                          CHANNEL_TAG, REPLY_TAG, CHANNEL_TAG, REPLY_TAG]
    for frame in tap.frames:
        assert MARKER.encode() not in frame
        assert b"test_sealing.task/1" not in frame and b"test_sealing.done/1" not in frame


async def test_without_channels_every_envelope_is_sealed_to_the_key_anew() -> None:
    tap = Wiretap()
    async with pair(MemoryNetwork(route=tap), channels=False) as (_, asking, worker, caller):
        for _ in range(3):
            await asking.context(caller).ask(worker.address, Task(text=MARKER))
    assert tap.tags() == [SEALED_TAG, REPLY_TAG] * 3
    ephemeral = {msgpack.unpackb(frame, raw=False)[3][:32] for frame in tap.frames[::2]}
    assert len(ephemeral) == 3  # a fresh HPKE key each time


async def test_a_receiver_that_lost_the_channel_is_sealed_to_again() -> None:
    network = MemoryNetwork()
    identity = Identity.generate()
    async with pair(network, worker=Worker(identity)) as (serving, asking, worker, caller):
        await asking.context(caller).ask(worker.address, Task(text="opens the channel"))
        assert serving.keyring.inbound_channels == 1
    # The worker restarts (same key, same endpoint) and has forgotten the channel.
    restarted = Worker(identity)
    caller2 = Caller()
    directory = StaticDirectory()
    async with open_runtime(restarted, transports=[network.transport("w2")]) as serving2, \
            open_runtime(caller2, transports=[network.transport("c2")],
                         directory=directory) as asking2:
        directory.add(restarted.address, *serving2.endpoints,
                      encryption_key=identity.encryption_public_key)
        ctx = asking2.context(caller2)
        await ctx.ask(restarted.address, Task(text="one"))
        key_id = next(iter(asking2.keyring._outbound.values())).keys.key_id
        serving2.keyring._inbound.clear()
        serving2.keyring._per_sender.clear()
        assert await ctx.ask(restarted.address, Task(text="two")) == Done(text="done: two")
        assert serving2.metrics.rejected["unknown_channel"] == 1
        assert next(iter(asking2.keyring._outbound.values())).keys.key_id != key_id
    assert restarted.seen == ["one", "two"]


async def test_a_plaintext_reply_to_a_sealed_request_is_refused() -> None:
    network = MemoryNetwork()
    worker = Identity.generate()

    async def answer_in_the_clear(frame: bytes) -> bytes:
        request = decode_frame(open_request(frame, worker).frame)
        return seal(worker, target=request.sender, message=Done(text=MARKER), now=time.time(),
                    ttl=30, in_reply_to=request.message_id)[1]

    caller = Caller()
    directory = StaticDirectory()
    async with network.transport("w").serve(answer_in_the_clear) as endpoint, open_runtime(
            caller, transports=[network.transport("c")], directory=directory) as asking:
        assert endpoint is not None
        directory.add(worker.address, endpoint, encryption_key=worker.encryption_public_key)
        with pytest.raises(UnexpectedReply, match="came back in plaintext"):
            await asking.context(caller).ask(worker.address, Task(text=MARKER))
        assert asking.metrics.rejected["unsealed"] == 1


# --- 10,000 altered or re-addressed frames ---------------------------------------------------

def _flip(frame: bytes, rng: random.Random) -> bytes:
    altered = bytearray(frame)
    altered[rng.randrange(len(altered))] ^= 1 << rng.randrange(8)
    return bytes(altered)


async def test_ten_thousand_altered_or_readdressed_frames_are_all_refused() -> None:
    rng = random.Random(9180)  # noqa: S311 - which bits to flip, reproducibly
    network = MemoryNetwork()
    sender, outsider = Identity.generate(), Identity.generate()
    worker, bystander = Worker(), Worker()
    async with open_runtime([worker, bystander], transports=[network.transport("w")]) as runtime:
        client = network.transport("c")
        endpoint = runtime.endpoints[0]
        key = worker.identity.encryption_public_key

        def signed(target: str = worker.address) -> bytes:
            return seal(sender, target=target, message=Task(text=MARKER), now=time.time(),
                        ttl=60)[1]

        hpke_frame, keys = seal_request(signed(), sender=sender.address, target=worker.address,
                                        recipient_key=key, keep=True)
        frames: list[tuple[str, bytes]] = []
        for _ in range(2_500):  # one bit flipped anywhere in an HPKE-sealed request
            frames.append(("altered", _flip(hpke_frame, rng)))
        # A channel the worker holds, then one bit flipped anywhere in requests on it.
        assert await client.request(endpoint, hpke_frame, timeout=5) is not None
        channel_frame = seal_on_channel(signed(), sender=sender.address, target=worker.address,
                                        keys=keys)
        for _ in range(2_500):
            frames.append(("altered", _flip(channel_frame, rng)))
        # The worker (a recipient that opened a message) seals it on to a bystander as if
        # it had been sent there, with HPKE or on a channel of its own.
        inner = open_request(seal_request(signed(), sender=sender.address,
                                          target=worker.address, recipient_key=key,
                                          keep=False)[0], worker.identity).frame
        for n in range(2_500):
            if n % 2:
                frames.append(("readdressed", seal_request(
                    inner, sender=sender.address, target=bystander.address,
                    recipient_key=bystander.identity.encryption_public_key, keep=False)[0]))
            else:  # the relay rewrites the addresses a sealed request names
                fields = msgpack.unpackb(hpke_frame, raw=False)
                fields[1 + n % 4 // 2] = (bystander.address if n % 4 // 2 else outsider.address)
                frames.append(("readdressed", msgpack.packb(fields)))
        for n in range(2_500):  # a channel request re-addressed by the relay or re-keyed
            fields = msgpack.unpackb(channel_frame, raw=False)
            if n % 3 == 0:
                fields[2] = bystander.address
            elif n % 3 == 1:
                fields[1] = outsider.address
            else:
                fields[4] = rng.randbytes(12)
            frames.append(("readdressed", msgpack.packb(fields)))

        assert len(frames) == 10_000
        reasons: dict[str, int] = {}
        for _, frame in frames:
            with pytest.raises(PeerRejected) as refused:
                await client.request(endpoint, frame, timeout=5)
            reasons[refused.value.reason] = reasons.get(refused.value.reason, 0) + 1
        assert worker.seen == [MARKER] and bystander.seen == []  # only the one sent whole
        assert set(reasons) <= {"malformed", "bad_seal", "readdressed", "unknown_channel",
                                "wrong_target"}
        assert reasons["readdressed"] == 1_250 and reasons["bad_seal"] > 5_000
        # The untouched channel request is still taken: nothing above was refused by accident.
        assert await client.request(endpoint, channel_frame, timeout=5) is not None
        assert worker.seen == [MARKER, MARKER]


def test_a_sealed_reply_opens_only_for_its_request_and_addresses() -> None:
    asker, replier, other = Identity.generate(), Identity.generate(), Identity.generate()
    wire, keys = seal_request(b"\x92", sender=asker.address, target=replier.address,
                              recipient_key=replier.encryption_public_key, keep=False)
    opened = open_request(wire, replier)
    reply = opened.seal_reply(b"signed reply")
    assert open_reply(reply, keys, replier=replier.address, asker=asker.address) == \
        b"signed reply"
    _, other_keys = seal_request(b"\x92", sender=asker.address, target=replier.address,
                                 recipient_key=replier.encryption_public_key, keep=False)
    with pytest.raises(BadSeal, match="answers another request"):
        open_reply(reply, other_keys, replier=replier.address, asker=asker.address)
    with pytest.raises(ReaddressedEnvelope):
        open_reply(reply, keys, replier=other.address, asker=asker.address)
    rng = random.Random(1)  # noqa: S311 - which bits to flip, reproducibly
    for _ in range(200):
        with pytest.raises(EnvelopeRejected):
            open_reply(_flip(reply, rng), keys, replier=replier.address, asker=asker.address)


def test_inbound_channels_are_bounded_per_sender_and_in_all() -> None:
    ring = Keyring(SealingPolicy(inbound_channels=5, inbound_per_sender=2))
    target = Identity.generate()
    senders = [Identity.generate() for _ in range(4)]
    for sender in senders:
        for _ in range(3):
            wire, _ = seal_request(b"\x92", sender=sender.address, target=target.address,
                                   recipient_key=target.encryption_public_key, keep=True)
            ring.keep(ring.open(wire, lambda _: target))
    assert ring.inbound_channels == 5
    assert all(0 < count <= 2 for count in map(len, ring._per_sender.values()))


class RecordingLibp2p(Libp2pTransport):
    """A real libp2p transport that also keeps the frames handed to it and their replies."""

    def __init__(self, host: Libp2pHost) -> None:
        super().__init__(host)
        self.frames: list[bytes] = []

    async def request(self, endpoint: str, frame: bytes, *, timeout: float) -> bytes | None:
        self.frames.append(frame)
        reply = await super().request(endpoint, frame, timeout=timeout)
        if reply is not None:
            self.frames.append(reply)
        return reply


async def test_envelopes_handed_to_libp2p_are_sealed_under_noise_too() -> None:
    """libp2p's Noise already encrypts the stream; the envelope inside it is sealed as well,
    so a libp2p relay or a node that logs streams finds no plaintext either."""
    config = Libp2pConfig(dht=False)
    worker, caller = Worker(), Caller()
    directory = StaticDirectory()
    async with open_libp2p_host(config) as first, open_libp2p_host(config) as second:
        sending = RecordingLibp2p(second)
        async with open_runtime(worker, transports=[Libp2pTransport(first)]) as serving, \
                open_runtime(caller, transports=[sending], directory=directory) as asking:
            directory.add(worker.address, *serving.endpoints)
            for n in range(2):
                reply = await asking.context(caller).ask(worker.address, Task(text=MARKER))
                assert reply == Done(text=f"done: {MARKER}"), n
    assert worker.seen == [MARKER, MARKER]
    assert len(sending.frames) == 6  # key request and answer, then two sealed exchanges
    assert not any(MARKER.encode() in frame for frame in sending.frames)


class Gathering(Worker):
    """Holds every task until `expected` are in, so they are all in flight at once."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.all_in = asyncio.Event()

    @handler
    async def on_task(self, ctx: Context, msg: Task) -> Done:
        self.seen.append(msg.text)
        if len(self.seen) >= self.expected:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 10)
        return Done(text=f"done: {msg.text}")


async def test_concurrent_first_asks_open_one_channel_and_it_is_used_after() -> None:
    tap = Wiretap()
    worker = Gathering(expected=40)
    async with pair(MemoryNetwork(route=tap), worker=worker) as (serving, asking, _, caller):
        ctx = asking.context(caller)
        await asyncio.gather(*(ctx.ask(worker.address, Task(text=str(n))) for n in range(40)))
        # One of the forty asked the worker to keep its secret; the others went by HPKE.
        assert serving.keyring.inbound_channels == 1
        tap.frames.clear()
        await ctx.ask(worker.address, Task(text="after"))
        assert tap.tags() == [CHANNEL_TAG, REPLY_TAG]
        assert serving.metrics.rejected["unknown_channel"] == 0


async def test_a_runtime_that_takes_only_sealed_envelopes_refuses_plaintext_but_key_requests(
        ) -> None:
    network = MemoryNetwork()
    worker, sender = Worker(), Identity.generate()
    config = RuntimeConfig(sealing=SealingPolicy(accept_plaintext=False))
    async with open_runtime(worker, transports=[network.transport("w")],
                            config=config) as serving:
        client = network.transport("c")
        plain = seal(sender, target=worker.address, message=Task(text=MARKER), now=time.time(),
                     ttl=30)[1]
        with pytest.raises(PeerRejected) as refused:
            await client.request(serving.endpoints[0], plain, timeout=5)
        assert refused.value.reason == "unsealed"
        assert "came in plaintext" in refused.value.detail
        asked = seal(sender, target=worker.address, message=KeyRequest(), now=time.time(),
                     ttl=30)[1]
        answer = decode_frame(await client.request(serving.endpoints[0], asked, timeout=5) or b"")
        answer.verify()  # signed by the worker itself
        assert answer.sender == worker.address
        assert decode_payload(KeyAnswer, answer.payload).key == \
            worker.identity.encryption_public_key
        caller = Caller()
        directory = StaticDirectory({worker.address: serving.endpoints})
        async with open_runtime(caller, transports=[network.transport("c2")],
                                directory=directory) as asking:
            assert await asking.context(caller).ask(worker.address, Task(text="sealed")) == \
                Done(text="done: sealed")
    assert worker.seen == ["sealed"]


async def test_a_peer_without_a_key_is_not_sent_to_in_the_clear() -> None:
    """A peer from before sealing has no handler for the key request: the ask fails, naming
    why, and nothing else was sent (no plaintext fallback a forged refusal could force)."""
    network = MemoryNetwork()
    older = Identity.generate()
    received: list[str] = []

    async def before_sealing(frame: bytes) -> bytes:
        envelope = decode_frame(frame)
        received.append(envelope.message_type)
        raise UnknownMessageType(f"older has no handler for {envelope.message_type}")

    caller = Caller()
    async with network.transport("o").serve(before_sealing) as endpoint, open_runtime(
            caller, transports=[network.transport("c")],
            directory=StaticDirectory({older.address: [str(endpoint)]})) as asking:
        with pytest.raises(PeerRejected, match="no encryption key to seal to"):
            await asking.context(caller).ask(older.address, Task(text=MARKER))
    assert received == ["aaex.key_request/1"]
