"""Encrypted against signed-only request/reply pairs, in one process (for bench.messaging).

A pair is what two agents do for one ask, minus the network: the asker signs the request,
the receiver decodes, verifies, checks freshness and replay and decodes the payload, signs
the reply, and the asker decodes and verifies it. Three ways, on the runtime's own code:

* ``signed``: signed envelopes in plaintext (what AAEX sent before sealing);
* ``hpke``: each request sealed to the receiver's key with HPKE (a fresh key per message),
  its reply under the key derived from that request's secret;
* ``channel``: each request sealed under the channel key the first HPKE request set up (a
  key per agreement or session), its reply too.

The loops run in alternating chunks so the machine's other load falls on all of them alike.
"""

from __future__ import annotations

import asyncio
import time

from aaex_agents.envelope import Envelope, EnvelopePolicy, check_fresh, decode_frame, seal
from aaex_agents.identity import Identity
from aaex_agents.keyring import Keyring, SealingPolicy
from aaex_agents.model import Message, decode_payload
from aaex_agents.replay import ReplayGuard
from aaex_agents.sealing import open_reply
from aaex_agents.transport.base import Transport

MODES = ("signed", "hpke", "channel")
PAYLOAD_BYTES = 1024
"""The payload the goals are stated for (1 KiB)."""
TARGET_HPKE_VS_SIGNED = 0.6
TARGET_CHANNEL_VS_SIGNED = 0.85


class _Request(Message, type="bench.sealing_request/1"):
    payload: str


class _Reply(Message, type="bench.sealing_reply/1"):
    payload: str


class PairLoop:
    """Ask-and-answer pairs between two identities, signed only or sealed one of two ways."""

    def __init__(self, mode: str, payload_bytes: int) -> None:
        self.mode = mode
        self._asker, self._worker = Identity.generate(), Identity.generate()
        self._policy = EnvelopePolicy()
        self._replays: tuple[ReplayGuard, ReplayGuard] = (self._policy.new_replay_guard(),
                                                          self._policy.new_replay_guard())
        self._request = _Request(payload="x" * payload_bytes)
        self._reply = _Reply(payload="y" * payload_bytes)
        self._outbound = Keyring(SealingPolicy(channels=mode == "channel",
                                               channel_messages=10**9, channel_age=1e9))
        self._inbound = Keyring(SealingPolicy(channels=mode == "channel"))
        self._key = self._worker.encryption_public_key

    def _receive(self, frame: bytes, replay: ReplayGuard, kind: type[Message]) -> Envelope:
        envelope = decode_frame(frame, max_bytes=self._policy.max_frame_bytes)
        envelope.verify()
        check_fresh(envelope, now=time.time(), policy=self._policy, replay=replay)
        decode_payload(kind, envelope.payload)
        return envelope

    def one(self) -> None:
        """One pair."""
        asker, worker, now = self._asker, self._worker, time.time()
        _, frame = seal(asker, target=worker.address, message=self._request, now=now, ttl=60.0)
        if self.mode == "signed":
            received = self._receive(frame, self._replays[0], _Request)
            _, reply = seal(worker, target=asker.address, message=self._reply, now=now,
                            ttl=60.0, in_reply_to=received.message_id)
            self._receive(reply, self._replays[1], _Reply)
            return
        sealed = self._outbound.seal(frame, sender=asker.address, target=worker.address,
                                     key=self._key, now=now)
        opened = self._inbound.open(sealed.frame, lambda _: worker)
        received = self._receive(opened.frame, self._replays[0], _Request)
        opened.check(received)
        self._inbound.keep(opened)
        self._outbound.settle(sealed, sender=asker.address, target=worker.address, now=now,
                              taken=True)
        _, reply = seal(worker, target=asker.address, message=self._reply, now=now, ttl=60.0,
                        in_reply_to=received.message_id)
        inner = open_reply(opened.seal_reply(reply), sealed.keys, replier=worker.address,
                           asker=asker.address)
        self._receive(inner, self._replays[1], _Reply)

    def run(self, count: int) -> float:
        """`count` pairs; the seconds they took."""
        one = self.one
        started = time.perf_counter()
        for _ in range(count):
            one()
        return time.perf_counter() - started


def pair_rates(count: int, payload_bytes: int = PAYLOAD_BYTES,
               chunks: int = 10) -> dict[str, float]:
    """Pairs per second of each mode, `count` each, measured in alternating chunks."""
    loops = {mode: PairLoop(mode, payload_bytes) for mode in MODES}
    size = max(1, count // chunks)
    for loop in loops.values():
        loop.run(min(size, 200))  # warm-up; the channel loop opens its channel here
    seconds = dict.fromkeys(MODES, 0.0)
    done = 0
    while done < count:
        step = min(size, count - done)
        for mode, loop in loops.items():
            seconds[mode] += loop.run(step)
        done += step
    return {mode: count / seconds[mode] for mode in MODES}


class WireAsker:
    """Asks an echo agent over a transport, signed only or sealed, with the same code path.

    Every mode builds the signed request with `envelope.seal`, sends it with
    `Transport.request` and checks the reply as a runtime does (decode, verify, freshness,
    replay, payload); the sealed modes add exactly the runtime's sealing steps. The echo is
    a real runtime, which answers a plaintext request in plaintext and a sealed one sealed.
    """

    def __init__(self, transport: Transport, endpoint: str, target: str, key: bytes,
                 mode: str, message: Message) -> None:
        self._transport, self._endpoint, self._target, self._key = (transport, endpoint, target,
                                                                     key)
        self.mode = mode
        self._asker = Identity.generate()
        self._policy = EnvelopePolicy()
        self._replay = self._policy.new_replay_guard()
        self._message = message
        self._keyring = Keyring(SealingPolicy(channels=mode == "channel",
                                              channel_messages=10**9, channel_age=1e9))
        self.errors = 0

    async def one(self) -> None:
        """One verified pair."""
        now = time.time()
        request, frame = seal(self._asker, target=self._target, message=self._message, now=now,
                              ttl=60.0)
        sealed = None
        if self.mode != "signed":
            sealed = self._keyring.seal(frame, sender=self._asker.address, target=self._target,
                                        key=self._key, now=now)
            frame = sealed.frame
        try:
            reply = await self._transport.request(self._endpoint, frame, timeout=30.0)
        finally:
            if sealed is not None:
                self._keyring.settle(sealed, sender=self._asker.address, target=self._target,
                                     now=now, taken=True)
        if reply is None:
            self.errors += 1
            return
        if sealed is not None:
            reply = open_reply(reply, sealed.keys, replier=self._target,
                               asker=self._asker.address)
        envelope = decode_frame(reply, max_bytes=self._policy.max_frame_bytes)
        envelope.verify()
        check_fresh(envelope, now=time.time(), policy=self._policy, replay=self._replay)
        if envelope.in_reply_to != request.message_id or envelope.sender != self._target:
            self.errors += 1

    async def pairs(self, count: int, in_flight: int) -> float:
        """`count` pairs with `in_flight` outstanding; the seconds they took."""
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await self.one()

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(min(in_flight, count)):
                group.create_task(worker())
        return time.perf_counter() - started


async def wire_rates(transport: Transport, endpoint: str, target: str, key: bytes, *,
                     message: Message, count: int, in_flight: int,
                     chunks: int = 4) -> tuple[dict[str, float], int]:
    """Pairs per second of each mode over `transport`, asking `message` (which the echo at
    `endpoint` answers), in alternating chunks; and how many replies were wrong."""
    askers = {mode: WireAsker(transport, endpoint, target, key, mode, message)
              for mode in MODES}
    for asker in askers.values():
        await asker.pairs(min(2 * in_flight, 200), in_flight)  # warm-up, opens the channel
    seconds = dict.fromkeys(MODES, 0.0)
    size, done = max(1, count // chunks), 0
    while done < count:
        step = min(size, count - done)
        for mode, asker in askers.items():
            seconds[mode] += await asker.pairs(step, in_flight)
        done += step
    return ({mode: count / seconds[mode] for mode in MODES},
            sum(asker.errors for asker in askers.values()))
