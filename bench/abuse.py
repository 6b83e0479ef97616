"""Abuse benchmark: floods against a real receiver, with legitimate traffic interleaved.

    python -m bench.abuse                      # HTTP and libp2p, 10 s per flood
    python -m bench.abuse --seconds 3          # shorter
    python -m bench.abuse --transports http

Three processes on one machine: a server (``--role server``) hosting a `Sink` agent with the
default `EnvelopePolicy`, an attacker (``--role attack``), and this parent, which sends
legitimate requests back to back (one in flight) and measures them. For each transport:

* ``idle``: legitimate traffic alone, for a baseline.
* ``replay``: the replay-window flood. Every envelope is validly signed by a fresh key,
  lives 599 s and is dated 9 s ahead; half name a type the sink does not handle, half a
  handled one. (Before per-sender replay state, capacity + 1 of them locked every other
  sender out for ~10 minutes.)
* ``garbage``: unsigned 1 MiB frames whose sender "address" is a million characters long.
  (Before the field-size checks, each cost ~0.9 s of the receiver's event loop.)
* ``slow`` (HTTP only): ``--connections`` (default 1,000) slow clients, each trickling a
  request head one byte a second and reconnecting when cut. (Before the listener limits,
  all were held open.) Outcomes: ``refused`` (503 at once: beyond the connection limits),
  ``cut`` (closed while still sending: the header timeout), ``open_at_end``.
* ``cfp``: a flood of calls for proposals (``market.cfp/2``) against a seller of its own
  (``--role seller``: a `Seller` with the node's rate limit per peer and `DialogueLimits`,
  ``--max-open`` slots), from fresh keys, ``--per-key`` calls each (15, as the hostile
  review sent), half with ``respond_by = 1e12`` and half ``--flood-ahead`` s ahead (290,
  inside the default window). The legitimate traffic is an honest stranger's calls for
  proposals, ``--honest-rate`` a second (under the per-peer rate limit); answered means
  offered (a `Propose`). (Before the dialogue quotas, 10,000 such calls shut the seller out:
  every later call got ``busy``.) Outcomes: ``Propose`` or the decline's reason.

The server also serves uAgents' ``POST /submit`` (the interop listener's route), and two
phases attack it; their legitimate traffic is uAgents sync Pings to the sink's ``agent1``
address, from one key on 127.0.0.1, each answered by a signed Pong in the response:

* ``submit``: the replay flood on ``/submit``. Validly signed envelopes, each from a fresh
  secp256k1 key, living 599 s; half chat acknowledgements (taken, never answered), half of
  a schema the sink does not know. (Before per-sender replay state, capacity + 1 of them
  locked every uAgents sender out for ~10 minutes.)
* ``held``: ``--connections`` sync requests that no agent answers (ErrorMessages), spread
  over 8 addresses (127.0.0.2 to 127.0.0.9), each sent again as soon as it is answered, or
  a second after a refusal. (Before the sync holds, 1,024 from 8 addresses were held until
  their envelopes expired and took every connection.) Outcomes: ``released`` (answered at
  the server's ``--sync-timeout``), ``refused`` (503 ``busy``: beyond the holds),
  ``refused_connection`` (503 from the listener's connection limits), ``open_at_end``.

Reported per phase: legitimate requests answered / sent, their p50 and p99 latency, attack
frames sent per second, and the server's resident memory (RSS) after the phase. The last
line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import msgpack
from pydantic import BaseModel

from aaex_agents import (
    Agent,
    Context,
    EnvelopePolicy,
    HttpTransport,
    Message,
    PeerRejected,
    RuntimeConfig,
    Transport,
    TransportError,
    handler,
    open_runtime,
)
from aaex_agents.envelope import (
    DEFAULT_MAX_FRAME_BYTES,
    ENVELOPE_TAG,
    ENVELOPE_VERSION,
    decode_frame,
    seal,
)
from aaex_agents.identity import Identity
from aaex_agents.interop import (
    CHAT_ACK_DIGEST,
    ERROR_MESSAGE_DIGEST,
    SchemaTable,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    UEnvelope,
    seal_envelope,
    serve_uagents,
)
from aaex_agents.model import decode_payload, message_class
from aaex_agents.money import Credits
from aaex_agents.testing import stop_on_stdin_close_or_signal
from aaex_agents.transport.libp2p import Libp2pConfig, Libp2pTransport, open_libp2p_host
from bench.stats import aligned, percentile, progress
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.dialogues import DIALOGUE_OVERHEAD_BYTES, DialogueLimits
from marketplace.trade.negotiation import CallForProposals, Decline, Seller, new_dialogue_id
from marketplace.trade.policy import AccessControl, AccessList
from marketplace.trade.strategies import SellerStrategy

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
JSON_HEADERS = {"Content-Type": "application/json"}
SYNC_HEADERS = {**JSON_HEADERS, "x-uagents-connection": "sync"}
UAGENTS_PHASES = ("submit", "held")
"""Phases against uAgents' /submit; their legitimate traffic is uAgents sync requests."""
PHASES = ("idle", "replay", "garbage", "slow", "cfp", *UAGENTS_PHASES)
PING_DIGEST = "model:" + "a1" * 32
PONG_DIGEST = "model:" + "b2" * 32
UNKNOWN_DIGEST = "model:" + "c3" * 32
"""Schema digests of this benchmark's own types (no uAgents agent is involved)."""
HELD_ADDRESSES = [f"127.0.0.{n}" for n in range(2, 10)]
"""Where the held-sync attacker connects from: 8 addresses, as in the hostile review."""


class Ping(Message, type="bench.abuse_ping/1"):
    """A legitimate request (and, from fresh keys, the handled half of the flood)."""

    n: int


class Pong(Message, type="bench.abuse_pong/1"):
    """The sink's answer."""

    n: int


class Orphan(Message, type="bench.abuse_orphan/1"):
    """A type the sink has no handler for."""


class Sink(Agent):
    """Answers every Ping."""

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(n=msg.n)


# -- transports ---------------------------------------------------------------------------
@asynccontextmanager
async def client_transport(kind: str) -> AsyncIterator[Transport]:
    """A transport that can reach a server of `kind`; closed on exit."""
    async with AsyncExitStack() as stack:
        transport: Transport
        if kind == "http":
            transport = HttpTransport()
        else:
            host = await stack.enter_async_context(open_libp2p_host(Libp2pConfig(dht=False)))
            transport = Libp2pTransport(host)
        stack.push_async_callback(transport.aclose)
        yield transport


# -- server role --------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """Resident memory of process `pid` in KiB (0 where /proc is absent)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def serve(kind: str, replay_capacity: int | None, sync_timeout: float | None) -> int:
    """Host the sink on `kind` (and on uAgents' /submit) until stdin closes; print counters."""
    sink = Sink(name="sink")
    policy = (EnvelopePolicy() if replay_capacity is None
              else EnvelopePolicy(replay_capacity=replay_capacity))
    gateway = uagents_gateway(policy, sync_timeout)
    async with stop_on_stdin_close_or_signal() as stop, AsyncExitStack() as stack:
        server: Transport
        if kind == "http":
            server = HttpTransport()
        else:
            host = await stack.enter_async_context(open_libp2p_host(Libp2pConfig(dht=False)))
            server = Libp2pTransport(host)
        runtime = await stack.enter_async_context(
            open_runtime(sink, transports=[server], config=RuntimeConfig(policy=policy),
                         gateways=[gateway]))
        submit = await stack.enter_async_context(serve_uagents(gateway))
        print(json.dumps({"address": sink.address, "endpoint": runtime.endpoints[0],
                          "submit": submit, "uagents": gateway.address_of(sink)}), flush=True)
        await stop.wait()
        guard = runtime.replay_guard
        print(json.dumps({"received": runtime.metrics.received,
                          "rejected": dict(runtime.metrics.rejected),
                          "replay_ids": len(guard), "replay_senders": guard.senders,
                          "replay_floors": guard.floors, "hot_folds": guard.hot_folds,
                          **uagents_counters(gateway)}),
              flush=True)
    return 0


# -- attack role --------------------------------------------------------------------------
def garbage_frame(target: str, size: int) -> bytes:
    """An unsigned frame of `size` bytes whose sender is a huge non-address."""
    now_ms = int(time.time() * 1000)
    fields: list[Any] = [ENVELOPE_TAG, ENVELOPE_VERSION, os.urandom(16), "", target,
                         os.urandom(16), None, Ping.message_type, now_ms, now_ms + 60_000,
                         msgpack.packb({"n": 0})]
    length = size
    for _ in range(5):
        fields[3] = "aaex1" + "q" * length
        frame = msgpack.packb([msgpack.packb(fields), os.urandom(64)])
        if len(frame) == size:
            break
        length -= len(frame) - size
    return frame


async def slow_clients(endpoint: str, seconds: float, connections: int) -> int:
    """Hold `connections` slow clients on `endpoint` for `seconds`; print what happened."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, connections + 256)), hard))
    host, port = endpoint.split("//")[1].split("/")[0].rsplit(":", 1)
    outcomes: dict[str, int] = {}
    opened = 0
    print(json.dumps({"ready": True}), flush=True)
    started = time.perf_counter()
    deadline = started + seconds

    async def one() -> None:
        nonlocal opened
        while time.perf_counter() < deadline:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError as exc:
                outcomes[type(exc).__name__] = outcomes.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(1)
                continue
            opened += 1
            writer.write(b"POST /aaex/v1/envelope HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            outcome = "open_at_end"
            try:
                while time.perf_counter() < deadline:
                    try:
                        answer = await asyncio.wait_for(reader.read(64), 1.0)
                    except TimeoutError:
                        writer.write(b"a")  # one more byte of the header, a second later
                        continue
                    outcome = "refused" if answer.startswith(b"HTTP/1.1 503") else "cut"
                    break
            except ConnectionError:
                outcome = "cut"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            writer.close()

    async with asyncio.TaskGroup() as group:
        for _ in range(connections):
            group.create_task(one())
    wall = time.perf_counter() - started
    print(json.dumps({"sent": opened, "per_s": opened / wall, "outcomes": outcomes}), flush=True)
    return 0


async def attack(kind: str, mode: str, endpoint: str, target: str, seconds: float,
                 concurrency: int) -> int:
    """Flood `endpoint` for `seconds` with `concurrency` frames in flight; print counts."""
    sent = 0
    outcomes: dict[str, int] = {}
    garbage = garbage_frame(target, DEFAULT_MAX_FRAME_BYTES - 1024) if mode == "garbage" else b""
    async with client_transport(kind) as transport:
        print(json.dumps({"ready": True}), flush=True)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                if mode == "garbage":
                    frame = garbage
                else:
                    message: Message = Orphan() if sent % 2 else Ping(n=-1)
                    _, frame = seal(Identity.generate(), target=target, message=message,
                                    now=time.time() + 9, ttl=599)
                sent += 1
                try:
                    await transport.request(endpoint, frame, timeout=REQUEST_TIMEOUT_S)
                    outcome = "answered"
                except PeerRejected as exc:
                    outcome = exc.reason
                except TransportError as exc:
                    outcome = type(exc).__name__
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        wall = await run_workers(worker, concurrency)
    return report_flood(sent, wall, outcomes)


async def run_workers(worker: Callable[[], Coroutine[Any, Any, None]], concurrency: int) -> float:
    """Run `concurrency` copies of an attacker's `worker` at once; the seconds they took."""
    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter() - started


def report_flood(sent: int, wall: float, outcomes: dict[str, int]) -> int:
    """An attacker's last line, which the parent reads: what it sent and how it went."""
    print(json.dumps({"sent": sent, "per_s": sent / wall, "outcomes": outcomes}), flush=True)
    return 0


# -- uAgents' /submit ----------------------------------------------------------------------
def uagents_gateway(policy: EnvelopePolicy, sync_timeout: float | None) -> UAgentsGateway:
    """The server's uAgents gateway: Ping and Pong mapped, the sink's `policy`."""
    config = UAgentsConfig(schemas=SchemaTable({Ping: PING_DIGEST, Pong: PONG_DIGEST}),
                           policy=policy)
    if sync_timeout is not None:
        config = UAgentsConfig(schemas=config.schemas, policy=policy, sync_timeout=sync_timeout)
    return UAgentsGateway(config)


def uagents_counters(gateway: UAgentsGateway) -> dict[str, Any]:
    """What the server's gateway took and refused, for its final JSON line."""
    return {"uagents_received": gateway.metrics.received["uagents"],
            "uagents_rejected": {reason: n for (protocol, reason), n
                                 in gateway.metrics.rejected.items() if protocol == "uagents"},
            "uagents_held_at_end": gateway.held}


def uagents_envelope(key: UAgentsKey, target: str, digest: str, payload: dict[str, Any], *,
                     ttl: int) -> bytes:
    """A signed uAgents envelope from `key` to `target`, living `ttl` seconds."""
    return seal_envelope(key, target=target, schema_digest=digest,
                         payload_json=json.dumps(payload), session=uuid.uuid4(),
                         expires=int(time.time()) + ttl).to_json()


def fresh_key() -> UAgentsKey:
    """A secp256k1 key never used before (as free to mint as the attacker likes)."""
    return UAgentsKey(os.urandom(32))


async def uagents_traffic(submit: str, target: str, until: asyncio.Event, counter: list[int],
                          failures: dict[str, int]) -> list[float]:
    """Back-to-back sync Pings to /submit until `until` is set; latencies of the answered.

    Each failure is counted in `failures` under its refusal reason or error type.
    """
    key = UAgentsKey(hashlib.sha256(b"bench.abuse honest sender").digest())
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while not until.is_set():
            n = counter[0]
            counter[0] += 1
            body = uagents_envelope(key, target, PING_DIGEST, {"n": n}, ttl=60)
            started = time.perf_counter()
            try:
                async with http.post(submit, data=body, headers=SYNC_HEADERS) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                continue
            took = (time.perf_counter() - started) * 1e3
            reply = UEnvelope.model_validate_json(answer) if status == 200 else None
            if reply is not None and reply.schema_digest == PONG_DIGEST and reply.verify():
                latencies.append(took)
            else:
                reason = f"http_{status}" if reply is None else "not_a_pong"
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    reason = str(json.loads(answer)["reason"])
                failures[reason] = failures.get(reason, 0) + 1
    return latencies


async def uagents_attack(mode: str, submit: str, target: str, seconds: float,
                         concurrency: int, connections: int) -> int:
    """Flood /submit (`submit` mode) or hold sync requests (`held`); print what happened."""
    if mode == "held":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (max(soft, min(hard, connections + 256)), hard))
    outcomes: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds

    def count(outcome: str) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def flood(http: aiohttp.ClientSession) -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            digest = UNKNOWN_DIGEST if sent % 2 else CHAT_ACK_DIGEST
            payload = {"timestamp": "2025-06-15T15:06:40+00:00",
                       "acknowledged_msg_id": str(uuid.uuid4()), "metadata": None}
            body = uagents_envelope(fresh_key(), target, digest, payload, ttl=599)
            sent += 1
            try:
                async with http.post(submit, data=body, headers=JSON_HEADERS) as response:
                    answer = await response.read()
                    outcome = "accepted" if response.status == 200 else f"http_{response.status}"
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        outcome = str(json.loads(answer)["reason"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            count(outcome)

    host, port = submit.split("//")[1].split("/")[0].rsplit(":", 1)
    head = (f"POST /submit HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "x-uagents-connection: sync\r\nContent-Length: {}\r\n\r\n")

    async def hold(local: str) -> None:
        # Raw connections: an aiohttp client opening a thousand at once is too slow to
        # attack at full strength on a shared two-core machine.
        nonlocal sent
        key = fresh_key()
        writer: asyncio.StreamWriter | None = None
        while time.perf_counter() < deadline:
            body = uagents_envelope(key, target, ERROR_MESSAGE_DIGEST, {"error": "x"}, ttl=599)
            try:
                async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
                    if writer is None or writer.is_closing():
                        reader, writer = await asyncio.open_connection(
                            host, int(port), local_addr=(local, 0))
                    writer.write(head.format(len(body)).encode() + body)
                    sent += 1
                    status, answer = await read_response(reader)
            except TimeoutError:
                count("open_at_end")
                break
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                count(type(exc).__name__)
                writer = None
                await asyncio.sleep(1)
                continue
            if status == 200:
                count("released")
                continue
            count("refused" if b'"busy"' in answer else "refused_connection"
                  if status == 503 else f"http_{status}")
            await asyncio.sleep(1)  # a refused client comes back a second later
        if writer is not None:
            writer.close()

    print(json.dumps({"ready": True}), flush=True)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http, \
            asyncio.TaskGroup() as group:
        if mode == "held":
            for n in range(connections):
                group.create_task(hold(HELD_ADDRESSES[n % len(HELD_ADDRESSES)]))
        else:
            for _ in range(concurrency):
                group.create_task(flood(http))
    return report_flood(sent, time.perf_counter() - started, outcomes)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 response (with a Content-Length) on `reader`."""
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    return int(lines[0].split()[1]), await reader.readexactly(length)


# -- parent role --------------------------------------------------------------------------
@dataclass
class Phase:
    """Figures of one phase on one transport."""

    transport: str
    phase: str
    legit_sent: int
    legit_answered: int
    legit_ratio: float
    legit_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    legit_failures: dict[str, int]
    attack_sent: int
    attack_per_s: float
    attack_outcomes: dict[str, int]
    server_rss_mib: float


async def child(*args: str) -> asyncio.subprocess.Process:
    """Start ``python -m bench.abuse`` with `args`, stdout piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.abuse", *args, cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)


async def read_json(process: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    """The next stdout line of `process`, as JSON."""
    if process.stdout is None:
        raise RuntimeError("child has no stdout pipe")
    line = await asyncio.wait_for(process.stdout.readline(), timeout=timeout)
    if not line:
        raise RuntimeError("child exited without reporting")
    result: dict[str, Any] = json.loads(line)
    return result


async def legit_traffic(transport: Transport, endpoint: str, target: str, sender: Identity,
                        until: asyncio.Event, counter: list[int],
                        failures: dict[str, int]) -> list[float]:
    """Back-to-back Pings until `until` is set; latencies (ms) of the answered ones.

    Each failure is counted in `failures` under its rejection reason or error type.
    """
    latencies: list[float] = []
    while not until.is_set():
        n = counter[0]
        counter[0] += 1
        request, frame = seal(sender, target=target, message=Ping(n=n), now=time.time(),
                              ttl=60)
        started = time.perf_counter()
        try:
            reply_frame = await transport.request(endpoint, frame, timeout=REQUEST_TIMEOUT_S)
        except PeerRejected as exc:
            failures[exc.reason] = failures.get(exc.reason, 0) + 1
            continue
        except TransportError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            continue
        took = (time.perf_counter() - started) * 1e3
        if reply_frame is None:
            continue
        reply = decode_frame(reply_frame)
        reply.verify()
        if reply.in_reply_to == request.message_id and reply.sender == target:
            latencies.append(took)
    return latencies


async def run_transport(kind: str, args: argparse.Namespace) -> tuple[list[Phase], Any]:
    """Start a server on `kind`, run every phase against it, stop it."""
    extra = [] if args.replay_capacity is None else ["--replay-capacity",
                                                     str(args.replay_capacity)]
    if args.sync_timeout is not None:
        extra += ["--sync-timeout", str(args.sync_timeout)]
    server = await child("--role", "server", "--kind", kind, *extra)
    extra_counters: dict[str, Any] = {}
    try:
        info = await read_json(server, START_TIMEOUT_S)
        endpoint, target = str(info["endpoint"]), str(info["address"])
        phases: list[Phase] = []
        sender = Identity.generate()
        async with client_transport(kind) as transport:
            for phase in args.phases:
                if phase in ("slow", *UAGENTS_PHASES) and kind != "http":
                    continue  # HTTP matters; libp2p has its own limits
                if phase == "cfp":  # against a seller of its own
                    measured, extra_counters["cfp_seller"] = await run_cfp_phase(kind, args)
                    phases.append(measured)
                    continue
                door = ((str(info["submit"]), str(info["uagents"])) if phase in UAGENTS_PHASES
                        else (endpoint, target))
                progress(f"[{kind}] {phase} for {args.seconds} s")
                counter = [0]
                failures: dict[str, int] = {}
                stop = asyncio.Event()
                attacker = None
                if phase != "idle":
                    attacker = await child("--role", "attack", "--kind", kind, "--mode", phase,
                                           "--endpoint", door[0], "--target", door[1],
                                           "--seconds", str(args.seconds),
                                           "--concurrency", str(args.concurrency),
                                           "--connections", str(args.connections))
                report: dict[str, Any] = {"sent": 0, "per_s": 0.0, "outcomes": {}}
                if attacker is not None:
                    await read_json(attacker, START_TIMEOUT_S)  # attacking from now on
                started = time.perf_counter()
                async with asyncio.TaskGroup() as group:
                    legit = group.create_task(
                        uagents_traffic(*door, stop, counter, failures)
                        if phase in UAGENTS_PHASES else
                        legit_traffic(transport, endpoint, target, sender, stop, counter,
                                      failures))
                    if attacker is not None:
                        report = await read_json(attacker, args.seconds + 120)
                        await attacker.wait()
                    else:
                        await asyncio.sleep(args.seconds)
                    stop.set()
                wall = time.perf_counter() - started
                latencies = legit.result()
                phases.append(Phase(
                    transport=kind, phase=phase, legit_sent=counter[0],
                    legit_answered=len(latencies),
                    legit_ratio=len(latencies) / counter[0] if counter[0] else float("nan"),
                    legit_per_s=len(latencies) / wall,
                    p50_ms=percentile(latencies, 50), p99_ms=percentile(latencies, 99),
                    max_ms=max(latencies, default=float("nan")), legit_failures=failures,
                    attack_sent=int(report["sent"]), attack_per_s=float(report["per_s"]),
                    attack_outcomes=dict(report["outcomes"]),
                    server_rss_mib=rss_kib(server.pid) / 1024))
    finally:
        if server.stdin is not None:
            server.stdin.close()
    counters = await read_json(server, 30)
    await asyncio.wait_for(server.wait(), timeout=30)
    return phases, {**counters, **extra_counters}


def table(phases: list[Phase]) -> str:
    """Aligned plain-text table, one row per transport and phase."""
    rows = [("transport", "phase", "legit ok", "ratio", "legit/s", "p50 ms", "p99 ms",
             "max ms", "attack/s", "server RSS MiB")]
    for p in phases:
        rows.append((p.transport, p.phase, f"{p.legit_answered}/{p.legit_sent}",
                     f"{p.legit_ratio:.3f}", f"{p.legit_per_s:,.0f}", f"{p.p50_ms:.2f}",
                     f"{p.p99_ms:.2f}", f"{p.max_ms:.0f}",
                     f"{p.attack_per_s:,.0f}" if p.phase != "idle" else "-",
                     f"{p.server_rss_mib:.0f}"))
    return aligned(rows, left=2)


async def parent(args: argparse.Namespace) -> int:
    """Run every transport, print the table and the JSON line."""
    phases: list[Phase] = []
    servers: dict[str, Any] = {}
    for kind in args.transports:
        measured, counters = await run_transport(kind, args)
        phases.extend(measured)
        servers[kind] = counters
    print(f"aaex_agents abuse benchmark: {args.seconds} s per phase, {args.concurrency} attack "
          f"frames in flight, one legitimate request in flight; Python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs")
    print()
    print(table(phases))
    print()
    for kind, counters in servers.items():
        print(f"{kind} server: {json.dumps(counters)}")
    print()
    failed = any(p.legit_ratio < 1.0 for p in phases)
    rounded = [{k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(p).items()}
               for p in phases]
    print(json.dumps({"bench": "aaex_agents.abuse", "seconds": args.seconds,
                      "concurrency": args.concurrency, "phases": rounded,
                      "servers": servers, "legit_all_answered": not failed,
                      "python": platform.python_version(), "cpus": os.cpu_count()}))
    return 1 if failed else 0


# -- call-for-proposals flood (the cfp phase) -------------------------------------------
class BenchTask(BaseModel):
    history: list[float]


class BenchSeller(Seller):
    """The seller the cfp phase floods: a negotiating seller as a node hosts one."""

    capability = "bench.forecast"
    task_model: ClassVar[type[BaseModel]] = BenchTask


def bench_call(respond_by: float) -> CallForProposals:
    """A call for proposals the bench seller can answer, ending at `respond_by`."""
    return CallForProposals(dialogue=new_dialogue_id(), capability=BenchSeller.capability,
                            task={"history": [1, 2, 3]}, max_price=Credits(10_000_000),
                            max_latency_ms=1000, max_deadline_s=60, respond_by=respond_by)


async def serve_seller(kind: str, max_open: int, max_per_buyer: int) -> int:
    """Host a `BenchSeller` on `kind` until stdin closes; then print its table's counters.

    It admits buyers as a node's sellers do (open, with the default rate limit per peer), and
    holds open dialogues under `DialogueLimits` with `max_open` slots.
    """
    identity = Identity.generate()
    gate = AccessControl({BenchSeller.capability: AccessList(open=True)})
    limits = DialogueLimits(max_open=max_open, max_per_buyer=min(max_per_buyer, max_open),
                            max_open_bytes=max(DialogueLimits().max_open_bytes,
                                               max_open * DIALOGUE_OVERHEAD_BYTES))
    seller = BenchSeller(identity, name="seller", strategy=SellerStrategy(cost=Credits(2_000_000)),
                         countersign=seller_countersigner(identity), admit=gate.admit,
                         limits=limits)
    async with stop_on_stdin_close_or_signal() as stop, AsyncExitStack() as stack:
        server: Transport
        if kind == "http":
            server = HttpTransport()
        else:
            host = await stack.enter_async_context(open_libp2p_host(Libp2pConfig(dht=False)))
            server = Libp2pTransport(host)
        runtime = await stack.enter_async_context(open_runtime(seller, transports=[server]))
        print(json.dumps({"address": seller.address, "endpoint": runtime.endpoints[0]}),
              flush=True)
        await stop.wait()
        print(json.dumps({"open_dialogues": len(seller.open), "slots": seller.open.slots,
                          "max_open": limits.max_open,
                          "dialogues_kept": len(seller.dialogues),
                          "received": runtime.metrics.received,
                          "rejected": dict(runtime.metrics.rejected)}), flush=True)
    return 0


async def cfp_outcome(transport: Transport, endpoint: str, key: Identity, target: str,
                      call: CallForProposals) -> str:
    """Send `call` signed by `key`; ``Propose``, the decline's reason, or what went wrong."""
    _, frame = seal(key, target=target, message=call, now=time.time(), ttl=60)
    try:
        reply_frame = await transport.request(endpoint, frame, timeout=REQUEST_TIMEOUT_S)
    except PeerRejected as exc:
        return exc.reason
    except TransportError as exc:
        return type(exc).__name__
    if reply_frame is None:
        return "no_reply"
    reply = decode_frame(reply_frame)
    reply.verify()
    cls = message_class(reply.message_type)
    if cls is None:
        return reply.message_type
    answer = decode_payload(cls, reply.payload)
    return answer.reason if isinstance(answer, Decline) else type(answer).__name__


async def cfp_flood(kind: str, endpoint: str, target: str, seconds: float, concurrency: int,
                    per_key: int, ahead: float) -> int:
    """Flood calls for proposals for `seconds`, `per_key` from each fresh key; print counts.

    Every other call ends at ``1e12`` (the hostile review's), the rest `ahead` s from now.
    """
    sent = 0
    outcomes: dict[str, int] = {}
    async with client_transport(kind) as transport:
        print(json.dumps({"ready": True}), flush=True)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                key = Identity.generate()
                for _ in range(per_key):
                    if time.perf_counter() >= deadline:
                        break
                    respond_by = 1e12 if sent % 2 else time.time() + ahead
                    sent += 1
                    outcome = await cfp_outcome(transport, endpoint, key, target,
                                                bench_call(respond_by))
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1

        wall = await run_workers(worker, concurrency)
    return report_flood(sent, wall, outcomes)


async def honest_calls(transport: Transport, endpoint: str, target: str, sender: Identity,
                       until: asyncio.Event, counter: list[int], failures: dict[str, int],
                       rate: float, window: float) -> list[float]:
    """An honest stranger's calls for proposals, `rate` a second, until `until` is set.

    Each ends `window` s ahead, as a node's delegator asks (``[market] negotiation_window``).

    Returns the latencies (ms) of the calls answered with an offer; every other outcome is
    counted in `failures` under its decline reason or error.
    """
    latencies: list[float] = []
    next_at = time.perf_counter()
    while not until.is_set():
        counter[0] += 1
        started = time.perf_counter()
        outcome = await cfp_outcome(transport, endpoint, sender, target,
                                    bench_call(time.time() + window))
        if outcome == "Propose":
            latencies.append((time.perf_counter() - started) * 1e3)
        else:
            failures[outcome] = failures.get(outcome, 0) + 1
        next_at += 1 / rate
        with contextlib.suppress(TimeoutError):  # paced: the seller's rate limit per peer
            await asyncio.wait_for(until.wait(), max(0.0, next_at - time.perf_counter()))
    return latencies


async def run_cfp_phase(kind: str, args: argparse.Namespace) -> tuple[Phase, dict[str, Any]]:
    """Start a seller on `kind`, flood it while an honest stranger asks; its figures."""
    seller = await child("--role", "seller", "--kind", kind, "--max-open", str(args.max_open),
                         "--max-per-buyer", str(args.max_per_buyer))
    try:
        info = await read_json(seller, START_TIMEOUT_S)
        endpoint, target = str(info["endpoint"]), str(info["address"])
        progress(f"[{kind}] cfp for {args.seconds} s")
        attacker = await child("--role", "attack", "--kind", kind, "--mode", "cfp",
                               "--endpoint", endpoint, "--target", target,
                               "--seconds", str(args.seconds),
                               "--concurrency", str(args.concurrency),
                               "--per-key", str(args.per_key),
                               "--flood-ahead", str(args.flood_ahead))
        await read_json(attacker, START_TIMEOUT_S)  # flooding from now on
        counter = [0]
        failures: dict[str, int] = {}
        stop = asyncio.Event()
        async with client_transport(kind) as transport:
            started = time.perf_counter()
            async with asyncio.TaskGroup() as group:
                legit = group.create_task(honest_calls(
                    transport, endpoint, target, Identity.generate(), stop, counter, failures,
                    args.honest_rate, args.honest_window))
                report = await read_json(attacker, args.seconds + 120)
                await attacker.wait()
                stop.set()
            wall = time.perf_counter() - started
        latencies = legit.result()
        phase = Phase(
            transport=kind, phase="cfp", legit_sent=counter[0], legit_answered=len(latencies),
            legit_ratio=len(latencies) / counter[0] if counter[0] else float("nan"),
            legit_per_s=len(latencies) / wall, p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99), max_ms=max(latencies, default=float("nan")),
            legit_failures=failures, attack_sent=int(report["sent"]),
            attack_per_s=float(report["per_s"]), attack_outcomes=dict(report["outcomes"]),
            server_rss_mib=rss_kib(seller.pid) / 1024)
    finally:
        if seller.stdin is not None:
            seller.stdin.close()
    counters = await read_json(seller, 30)
    await asyncio.wait_for(seller.wait(), timeout=30)
    return phase, counters


def add_cfp_arguments(parser: argparse.ArgumentParser) -> None:
    """The cfp phase's options."""
    defaults = DialogueLimits()
    parser.add_argument("--max-open", type=int, default=defaults.max_open,
                        help=f"cfp: the seller's [dialogues] max_open (default "
                        f"{defaults.max_open}); a small one fills the table sooner")
    parser.add_argument("--max-per-buyer", type=int, default=defaults.max_per_buyer,
                        help=f"cfp: the seller's max_per_buyer (default {defaults.max_per_buyer})")
    parser.add_argument("--per-key", type=int, default=15,
                        help="cfp: calls from each fresh key (default 15)")
    parser.add_argument("--flood-ahead", type=float, default=290.0,
                        help="cfp: seconds ahead the flood's in-window calls end (default 290)")
    parser.add_argument("--honest-rate", type=float, default=4.0,
                        help="cfp: the honest buyer's calls a second (default 4, under the "
                        "per-peer rate limit of 5)")
    parser.add_argument("--honest-window", type=float, default=2.0,
                        help="cfp: seconds ahead the honest buyer's calls end (default 2, a "
                        "node's negotiation_window)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.abuse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["parent", "server", "seller", "attack"],
                        default="parent", help="internal: the child processes")
    parser.add_argument("--kind", choices=["http", "libp2p"], default="http",
                        help="internal: the transport of a child")
    parser.add_argument("--mode", choices=PHASES[1:], default="replay",
                        help="internal: the attack a child runs")
    parser.add_argument("--endpoint", help="internal: where the attacker sends")
    parser.add_argument("--target", help="internal: the sink's address")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of each phase (default 10 s)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="attack frames in flight (default 8)")
    parser.add_argument("--connections", type=int, default=1000,
                        help="slow clients of the slow phase (default 1000)")
    parser.add_argument("--replay-capacity", type=int, default=None,
                        help="the server's EnvelopePolicy.replay_capacity (default: the "
                        "policy's default); a small one shows a replay flood sooner")
    add_cfp_arguments(parser)
    parser.add_argument("--sync-timeout", type=float, default=None,
                        help="the server's uAgents sync_timeout (default: the gateway's, "
                        "30 s); a short one shows held requests released within a phase")
    parser.add_argument("--transports", type=lambda text: text.split(","),
                        default=["http", "libp2p"],
                        help="comma-separated: http, libp2p (default both)")
    parser.add_argument("--phases", type=lambda text: text.split(","), default=list(PHASES),
                        help=f"comma-separated, from {', '.join(PHASES)} (default all)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency <= 0:
        parser.error("--seconds and --concurrency must be positive")
    for kind in args.transports:
        if kind not in ("http", "libp2p"):
            parser.error(f"unknown transport {kind!r}; choose from http, libp2p")
    for phase in args.phases:
        if phase not in PHASES:
            parser.error(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}")
    if args.role == "attack" and (args.endpoint is None or args.target is None):
        parser.error("--role attack needs --endpoint and --target")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.abuse``."""
    args = parse_args(argv)
    if args.role == "server":
        return asyncio.run(serve(args.kind, args.replay_capacity, args.sync_timeout))
    if args.role == "seller":
        return asyncio.run(serve_seller(args.kind, args.max_open, args.max_per_buyer))
    if args.role == "attack" and args.mode == "cfp":
        return asyncio.run(cfp_flood(args.kind, args.endpoint, args.target, args.seconds,
                                     args.concurrency, args.per_key, args.flood_ahead))
    if args.role == "attack" and args.mode in UAGENTS_PHASES:
        return asyncio.run(uagents_attack(args.mode, args.endpoint, args.target, args.seconds,
                                          args.concurrency, args.connections))
    if args.role == "attack" and args.mode == "slow":
        return asyncio.run(slow_clients(args.endpoint, args.seconds, args.connections))
    if args.role == "attack":
        return asyncio.run(attack(args.kind, args.mode, args.endpoint, args.target,
                                  args.seconds, args.concurrency))
    return asyncio.run(parent(args))


if __name__ == "__main__":
    sys.exit(main())
