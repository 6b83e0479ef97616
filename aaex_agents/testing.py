"""The public test kit: in-memory network, fault routes, a scripted peer, a manual clock.

    network = MemoryNetwork(route=Faults(seed=7, drop=0.1))
    async with open_runtime(agent, transports=[network.transport("a")]) as runtime: ...

Fault injection is done only here, through `route`, and the names say so: nothing in this
module pretends to be a working peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .clock import ManualClock
from .directory import StaticDirectory
from .envelope import Envelope, decode_frame, seal
from .errors import PeerUnreachable
from .identity import Identity
from .keyring import KeyAnswer, KeyRequest, Keyring
from .model import Message
from .transport.memory import Deliver, MemoryNetwork, MemoryTransport, Route

__all__ = ["Faults", "JsonLinesProcess", "ManualClock", "MemoryNetwork", "MemoryTransport", "Route",
           "ScriptedPeer", "stop_on_stdin_close_or_signal"]


@dataclass
class Faults:
    """A seeded `route` that drops, delays, duplicates and corrupts deliveries.

    Attributes:
        seed: RNG seed, so a failing run can be replayed exactly.
        drop: probability a delivery is lost (the sender sees PeerUnreachable).
        duplicate: probability a frame is delivered twice (the reply of the first is kept).
        corrupt: probability one random bit of the frame is flipped.
        delay: (min, max) seconds added before each delivery.
    """

    seed: int = 0
    drop: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    delay: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - reproducible faults, not secrets
        self.log: list[tuple[str, str]] = []

    async def __call__(self, endpoint: str, frame: bytes, deliver: Deliver) -> bytes | None:
        """Deliver `frame` through the configured faults."""
        low, high = self.delay
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high))
        if self._rng.random() < self.drop:
            self.log.append(("drop", endpoint))
            raise PeerUnreachable(f"fault injected: delivery to {endpoint} dropped")
        if self._rng.random() < self.corrupt:
            position = self._rng.randrange(len(frame) * 8)
            mutable = bytearray(frame)
            mutable[position // 8] ^= 1 << (position % 8)
            frame = bytes(mutable)
            self.log.append(("corrupt", endpoint))
        reply = await deliver(frame)
        if self._rng.random() < self.duplicate:
            self.log.append(("duplicate", endpoint))
            try:
                await deliver(frame)
            except Exception as exc:  # noqa: BLE001 - the duplicate's fate is recorded, not raised
                self.log.append(("duplicate-rejected", type(exc).__name__))
        return reply


Script = Callable[[Envelope], Awaitable[Message | bytes | None]]


class ScriptedPeer:
    """A peer whose every answer is written by the test: for fault injection.

    `script(envelope)` receives each inbound envelope *undecoded and unverified* and returns
    a Message (sealed and signed by this peer as a reply), raw bytes (sent back verbatim:
    garbage, a forged or replayed frame), or None (no reply). Raising an exception fails the
    exchange like a broken peer would; sleeping past the caller's timeout simulates a hang.
    """

    def __init__(self, network: MemoryNetwork, script: Script, *, name: str = "scripted",
                 identity: Identity | None = None, clock: ManualClock | None = None,
                 ttl: float = 60.0) -> None:
        self.identity = identity or Identity.generate()
        self.transport = network.transport(name)
        self.received: list[Envelope] = []
        self._script = script
        self._clock = clock
        self._ttl = ttl
        self._keyring = Keyring()

    @property
    def address(self) -> str:
        """The peer's address."""
        return self.identity.address

    def seal(self, target: str, message: Message, *, in_reply_to: bytes | None = None,
             session: bytes | None = None, ttl: float | None = None,
             now: float | None = None) -> bytes:
        """A frame from this peer, signed for real; for tests that send raw frames."""
        when = now if now is not None else (self._clock.now() if self._clock else time.time())
        return seal(self.identity, target=target, message=message, now=when,
                    ttl=ttl or self._ttl, session=session, in_reply_to=in_reply_to)[1]

    async def _on_frame(self, frame: bytes) -> bytes | None:
        """Open a sealed frame as a runtime does, run the script, seal its answer back.

        A key request is answered as a runtime answers it, without the script; a script that
        answers raw bytes has them sealed too, if the request came sealed.
        """
        opened = self._keyring.open(
            frame, lambda address: self.identity if address == self.address else None)
        envelope = decode_frame(opened.frame)
        opened.check(envelope)
        self._keyring.keep(opened)
        if envelope.message_type == KeyRequest.message_type:
            answer: Message | bytes | None = KeyAnswer(key=self.identity.encryption_public_key)
        else:
            self.received.append(envelope)
            answer = await self._script(envelope)
        if answer is None:
            return None
        if not isinstance(answer, bytes):
            answer = self.seal(envelope.sender, answer, in_reply_to=envelope.message_id,
                               session=envelope.session)
        return opened.seal_reply(answer)

    @asynccontextmanager
    async def serving(self, directory: StaticDirectory | None = None) -> AsyncIterator[str]:
        """Serve until the block exits; registers the endpoint in `directory` if given."""
        async with self.transport.serve(self._on_frame):
            if directory is not None:
                directory.add(self.address, self.transport.endpoint,
                              encryption_key=self.identity.encryption_public_key)
            yield self.transport.endpoint

    def __repr__(self) -> str:
        return f"<ScriptedPeer {self.address} received={len(self.received)}>"


class JsonLinesProcess:
    """A child OS process driven by JSON lines.

    It prints one line when ready, then answers each command line with one line.
    Multi-process tests and benchmarks build on it.

        child = await JsonLinesProcess.start([sys.executable, "-m", "my_worker"])
        answer = await child.call({"op": "stats"})
        await child.stop()          # sends {"op": "quit"}, closes stdin, waits
    """

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready

    @classmethod
    async def start(cls, args: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                    timeout: float = 120.0) -> JsonLinesProcess:
        """Start the child and wait (at most `timeout` s) for its ready line.

        Raises:
            RuntimeError: the child exited before it was ready (its exit code is given).
            TimeoutError: it did not become ready in time (it is killed).
        """
        process = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024)
        try:
            line = await asyncio.wait_for(cls._stdout(process).readline(), timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if not line:
            raise RuntimeError(f"{args[:3]} exited with {await process.wait()} before it was ready")
        document: dict[str, Any] = json.loads(line)
        return cls(process, document)

    @staticmethod
    def _stdout(process: asyncio.subprocess.Process) -> asyncio.StreamReader:
        if process.stdout is None:
            raise RuntimeError("the child has no stdout pipe")
        return process.stdout

    async def call(self, command: dict[str, Any], *, timeout: float = 600.0) -> dict[str, Any]:
        """Send one command line and return the child's one-line answer.

        Raises:
            RuntimeError: the child died before answering.
        """
        if self.process.stdin is None:
            raise RuntimeError("the child has no stdin pipe")
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self._stdout(self.process).readline(), timeout)
        if not line:
            raise RuntimeError(f"the child died during {command.get('op')!r}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self, *, timeout: float = 30.0) -> int:
        """Ask the child to quit, close its stdin and return its exit code (killed if late)."""
        if self.process.returncode is None and self.process.stdin is not None:
            try:
                self.process.stdin.write(b'{"op": "quit"}\n')
                await self.process.stdin.drain()
                self.process.stdin.close()
            except ConnectionError:
                pass
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    def kill(self) -> None:
        """SIGKILL the child: no clean-up of any kind runs (for crash tests)."""
        self.process.kill()


@asynccontextmanager
async def stop_on_stdin_close_or_signal() -> AsyncIterator[asyncio.Event]:
    """Yield an event set when stdin reaches end of file, or on SIGTERM or SIGINT.

    For child processes of multi-process tests and demos: the parent stops them by closing
    their stdin or by a signal. Enter it *before* announcing readiness, so no signal can
    arrive while the default handler would still kill the process. stdin is watched by the
    event loop itself, not by a thread blocked in `read()`, which would hold up the
    interpreter's shutdown after a signal.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def watch_stdin() -> None:
        try:
            with contextlib.suppress(OSError):  # a broken pipe ends it as end of file does
                await reader.read()
        finally:
            stop.set()

    async with asyncio.TaskGroup() as group:
        eof = group.create_task(watch_stdin(), name="stdin.eof")
        try:
            yield stop
        finally:
            eof.cancel()
            transport.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
