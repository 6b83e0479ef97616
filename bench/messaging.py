"""Messaging benchmark: signed request/response between two OS processes over HTTP.

    python -m bench.messaging                       # our figures (3 runs, median)
    python -m bench.messaging --quick               # short smoke run
    python -m bench.messaging --uagents-python .venv-uagents/bin/python   # side by side

Measured on this machine:

* HTTP between two processes on 127.0.0.1: a child process (``--role echo``) hosts an Echo
  agent; the parent hosts a client agent and asks it. Sequential round trips (p50, p99,
  pairs/s), then throughput with ``--concurrency`` asks in flight (pairs/s, p50, p99),
  each after a warm-up. A fresh child and client runtime are used for every run.
* ``seal_open_per_s``: seal an envelope, then decode, verify, check freshness against a
  replay window and decode the payload (what a receiver does), in one process.
* ``raw_sign_verify_per_s``: PyNaCl ``SigningKey.sign`` + ``VerifyKey.verify`` of the same
  bytes as one sealed envelope body: the floor the envelope layer is compared with.

With ``--uagents-python`` the Fetch.ai uAgents baseline script (``--uagents-script``) runs
afterwards with matching sizes (``--runs 1 --configs http``) and its figures are reported next
to ours, with ratios. The last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from nacl.signing import SigningKey

from aaex_agents import (
    Agent,
    Context,
    HttpTransport,
    Message,
    StaticDirectory,
    handler,
    open_runtime,
)
from aaex_agents.envelope import EnvelopePolicy, check_fresh, decode_frame, seal
from aaex_agents.identity import Identity
from aaex_agents.model import decode_payload
from bench.sealing import (
    MODES,
    TARGET_CHANNEL_VS_SIGNED,
    TARGET_HPKE_VS_SIGNED,
    pair_rates,
    wire_rates,
)
from bench.sealing import PAYLOAD_BYTES as SEALING_PAYLOAD_BYTES
from bench.stats import aligned, percentile, progress  # percentile: linear, as uAgents

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_UAGENTS_SCRIPT = Path("..") / "shared" / "peer-bench" / "uagents_baseline.py"
CHILD_START_TIMEOUT_S = 30.0
CHILD_STOP_TIMEOUT_S = 15.0
ASK_TIMEOUT_S = 30.0
UAGENTS_TIMEOUT_S = 1800.0

# Targets, checked and reported in the summary (see docs/benchmarks.md).
TARGET_PAIRS_X = 20.0  # at least 20x uAgents' pairs/s over HTTP
TARGET_P50_FRACTION = 0.1  # at most 1/10 of uAgents' sequential p50
TARGET_SEAL_OPEN_VS_RAW = 0.7  # seal+open at least 70% of raw sign+verify


# -- messages and agents ------------------------------------------------------------------
class EchoRequest(Message, type="bench.echo_request/1"):
    """Same shape as the uAgents baseline's Req: an id and a payload string."""

    id: int
    payload: str


class EchoReply(Message, type="bench.echo_reply/1"):
    """Same shape as the uAgents baseline's Resp."""

    id: int
    payload: str


class Echo(Agent):
    """Answers every request with its id and payload."""

    @handler
    async def on_request(self, ctx: Context, msg: EchoRequest) -> EchoReply:
        return EchoReply(id=msg.id, payload=msg.payload)


class Client(Agent):
    """No handlers: the parent drives it through its context."""


# -- child role: the echo agent -------------------------------------------------------------
class _EofWatcher(asyncio.Protocol):
    """Sets `stop` when the pipe it reads (our stdin) reaches end of file."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def data_received(self, data: bytes) -> None:
        """Ignore input; only its end matters."""

    def eof_received(self) -> bool | None:
        self._stop.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop.set()


async def serve_echo() -> int:
    """Host Echo over HTTP until stdin closes, SIGTERM or SIGINT; print where it listens."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    stdin_transport: asyncio.BaseTransport | None = None
    stdin_mode = os.fstat(sys.stdin.fileno()).st_mode
    if stat.S_ISFIFO(stdin_mode) or stat.S_ISSOCK(stdin_mode):  # else: signals only
        stdin_transport, _ = await loop.connect_read_pipe(lambda: _EofWatcher(stop), sys.stdin)
    echo = Echo(name="echo")
    try:
        async with open_runtime(echo, transports=[HttpTransport()]) as runtime:
            print(json.dumps({"address": echo.address, "endpoint": runtime.endpoints[0],
                              "key": echo.identity.encryption_public_key.hex()}), flush=True)
            await stop.wait()
    finally:
        if stdin_transport is not None:
            stdin_transport.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0


# -- parent role: HTTP measurements -------------------------------------------------------
@dataclass
class HttpRun:
    """Figures of one run between two processes."""

    seq_pairs_per_s: float
    seq_p50_ms: float
    seq_p99_ms: float
    tput_pairs_per_s: float
    tput_p50_ms: float
    tput_p99_ms: float
    tput_client_cpu_us: float
    tput_echo_cpu_us: float
    tput_other_cores: float
    errors: int
    child_exit: int
    sealed: dict[str, float]
    """HTTP pairs/s at 1 KiB by how they are protected (see bench.sealing.MODES)."""


class Asker:
    """Asks the echo agent and checks each reply; numbers requests."""

    def __init__(self, ctx: Context, target: str, payload: str) -> None:
        self._ctx = ctx
        self._target = target
        self._payload = payload
        self._next_id = 0
        self.errors = 0

    async def one(self) -> float:
        """One verified round trip; return its latency in milliseconds."""
        request_id = self._next_id
        self._next_id += 1
        started = time.perf_counter()
        reply = await self._ctx.ask(self._target,
                                    EchoRequest(id=request_id, payload=self._payload),
                                    reply_type=EchoReply, timeout=ASK_TIMEOUT_S)
        took = (time.perf_counter() - started) * 1e3
        if reply.id != request_id or reply.payload != self._payload:
            self.errors += 1
        return took

    async def sequential(self, count: int) -> tuple[list[float], float]:
        """`count` round trips one after another: latencies (ms) and wall time (s)."""
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(count):
            latencies.append(await self.one())
        return latencies, time.perf_counter() - started

    async def concurrent(self, count: int, in_flight: int) -> tuple[list[float], float]:
        """`count` round trips with `in_flight` outstanding at all times (until the tail)."""
        latencies: list[float] = []
        remaining = count

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await self.one())

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for _ in range(min(in_flight, count)):
                group.create_task(worker())
        return latencies, time.perf_counter() - started


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used; NaN where /proc is absent."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat); NaN elsewhere."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def start_child() -> tuple[asyncio.subprocess.Process, str, str, bytes]:
    """Start the echo child; return it with the address, endpoint and key it printed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.messaging", "--role", "echo", cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    if child.stdout is None:
        raise RuntimeError("echo child has no stdout pipe")
    line = b""
    try:
        line = await asyncio.wait_for(child.stdout.readline(), timeout=CHILD_START_TIMEOUT_S)
        info = json.loads(line)
        return (child, str(info["address"]), str(info["endpoint"]),
                bytes.fromhex(info["key"]))
    except (TimeoutError, ValueError, KeyError):
        await stop_child(child)
        raise RuntimeError(f"echo child did not announce itself: {line!r}") from None


async def stop_child(child: asyncio.subprocess.Process) -> int:
    """Close the child's stdin and wait; SIGTERM, then SIGKILL if it lingers."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        return await asyncio.wait_for(child.wait(), timeout=CHILD_STOP_TIMEOUT_S)
    except TimeoutError:
        pass
    child.terminate()
    try:
        return await asyncio.wait_for(child.wait(), timeout=CHILD_STOP_TIMEOUT_S)
    except TimeoutError:
        child.kill()
        return await child.wait()


async def http_run(args: argparse.Namespace) -> HttpRun:
    """One run: fresh echo child, fresh client runtime, warm-up, sequential, throughput."""
    child, address, endpoint, key = await start_child()
    try:
        directory = StaticDirectory()
        directory.add(address, endpoint, encryption_key=key)
        client = Client(name="client")
        async with open_runtime(client, transports=[HttpTransport()],
                                directory=directory) as runtime:
            asker = Asker(runtime.context(client), address, "x" * args.payload_bytes)
            await asker.sequential(args.warmup)
            await asker.concurrent(2 * args.concurrency, args.concurrency)  # fill the pool
            seq, seq_wall = await asker.sequential(args.n_seq)
            cpu_before = (time.process_time(), process_cpu_s(child.pid), machine_busy_s())
            tput, tput_wall = await asker.concurrent(args.n_tput, args.concurrency)
            cpu_after = (time.process_time(), process_cpu_s(child.pid), machine_busy_s())
        wire = HttpTransport()
        try:  # encrypted against signed-only, on one code path (see bench.sealing)
            sealed, sealed_errors = await wire_rates(
                wire, endpoint, address, key, count=args.n_tput, in_flight=args.concurrency,
                message=EchoRequest(id=0, payload="x" * SEALING_PAYLOAD_BYTES))
        finally:
            await wire.aclose()
    finally:
        code = await stop_child(child)
    if code != 0:
        raise RuntimeError(f"echo child exited with {code}")
    client_s, echo_s, all_s = (after - before for before, after in zip(cpu_before, cpu_after,
                                                                       strict=True))
    return HttpRun(
        seq_pairs_per_s=args.n_seq / seq_wall, seq_p50_ms=percentile(seq, 50),
        seq_p99_ms=percentile(seq, 99), tput_pairs_per_s=args.n_tput / tput_wall,
        tput_p50_ms=percentile(tput, 50), tput_p99_ms=percentile(tput, 99),
        tput_client_cpu_us=client_s / args.n_tput * 1e6,
        tput_echo_cpu_us=echo_s / args.n_tput * 1e6,
        tput_other_cores=max(0.0, (all_s - client_s - echo_s) / tput_wall),
        errors=asker.errors + sealed_errors, child_exit=code, sealed=sealed)


# -- envelope layer in one process --------------------------------------------------------
class SealOpenLoop:
    """Seal, then fully open (decode, verify, freshness and replay, payload): a receiver's path."""

    def __init__(self, payload_bytes: int) -> None:
        self._sender, receiver = Identity.generate(), Identity.generate()
        self._target = receiver.address
        self._policy = EnvelopePolicy()
        self._replay = self._policy.new_replay_guard()
        self._message = EchoRequest(id=1, payload="x" * payload_bytes)
        envelope, _ = seal(self._sender, target=self._target, message=self._message,
                           now=time.time(), ttl=60.0)
        self.body = envelope.body

    def run(self, count: int) -> float:
        """Seal and open `count` envelopes; return the seconds it took."""
        sender, target, message, policy, replay = (
            self._sender, self._target, self._message, self._policy, self._replay)
        clock = time.time
        started = time.perf_counter()
        for _ in range(count):
            _, frame = seal(sender, target=target, message=message, now=clock(), ttl=60.0)
            envelope = decode_frame(frame, max_bytes=policy.max_frame_bytes)
            envelope.verify()
            check_fresh(envelope, now=clock(), policy=policy, replay=replay)
            decode_payload(EchoRequest, envelope.payload)
        return time.perf_counter() - started


class RawSignVerifyLoop:
    """PyNaCl `SigningKey.sign` + `VerifyKey.verify` of fixed bytes: the crypto floor."""

    def __init__(self, body: bytes) -> None:
        self._signing_key = SigningKey.generate()
        self._verify_key = self._signing_key.verify_key
        self._body = body

    def run(self, count: int) -> float:
        """Sign and verify `count` times; return the seconds it took."""
        sign, verify, body = self._signing_key.sign, self._verify_key.verify, self._body
        started = time.perf_counter()
        for _ in range(count):
            verify(sign(body))
        return time.perf_counter() - started


def envelope_rates(count: int, payload_bytes: int, chunks: int = 10) -> tuple[float, float]:
    """Seal+open and raw sign+verify per second, `count` each, in alternating chunks.

    Alternating keeps both loops under the same machine conditions, so their ratio is
    not skewed by a neighbour that happens to run during only one of them.
    """
    seal_open = SealOpenLoop(payload_bytes)
    raw = RawSignVerifyLoop(seal_open.body)  # the same bytes as one sealed envelope body
    size = max(1, count // chunks)
    seal_open.run(min(size, 500))  # warm-up
    raw.run(min(size, 500))
    seal_open_s = raw_s = 0.0
    done = 0
    while done < count:
        step = min(size, count - done)
        seal_open_s += seal_open.run(step)
        raw_s += raw.run(step)
        done += step
    return count / seal_open_s, count / raw_s


# -- uAgents baseline ---------------------------------------------------------------------
def run_uagents(python: str, script: Path, args: argparse.Namespace) -> dict[str, object]:
    """Run the uAgents baseline (http, one run, matching sizes); return its figures."""
    command = [python, str(script), "--runs", "1", "--configs", "http",
               "--n-lat", str(args.n_seq), "--n-tput", str(args.n_tput),
               "--n-sr", str(min(args.n_seq, 200)), "--concurrency", str(args.concurrency),
               "--warmup", str(args.warmup), "--payload-bytes", str(args.payload_bytes)]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, started = machine_busy_s(), time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=UAGENTS_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"uAgents baseline did not run: {exc}"}
    wall = time.perf_counter() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    baseline_cpu = (children_after.ru_utime + children_after.ru_stime
                    - children_before.ru_utime - children_before.ru_stime)
    other_cores = max(0.0, (machine_busy_s() - busy_before - baseline_cpu) / wall)
    lines = done.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1])
        http = summary["http"]
        run_lines = [line.split(" http: ", 1)[1] for line in lines
                     if line.startswith("[run ") and " http: " in line]
        mean_ms = statistics.median(float(json.loads(text)["lat_mean_ms"])
                                    for text in run_lines)
        return {
            "version": str(summary["uagents"]),
            "pairs_per_s": float(http["tput_pairs_per_s"]),
            "seq_pairs_per_s": 1e3 / mean_ms,
            "p50_ms": float(http["lat_p50_ms"]),
            "p99_ms": float(http["lat_p99_ms"]),
            "errors": int(http["errors"]),
            "other_cores": other_cores,
        }
    except (IndexError, ValueError, KeyError, TypeError, statistics.StatisticsError):
        tail = (done.stdout + done.stderr)[-400:]
        return {"error": f"uAgents baseline exited {done.returncode} without figures: {tail}"}


# -- report -------------------------------------------------------------------------------
def median_of(values: Sequence[float]) -> float:
    """Median of one figure over the runs."""
    return float(statistics.median(values))


def fmt(value: object, digits: int = 1) -> str:
    """A figure for the table."""
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return "-"


def table(ours: dict[str, float], theirs: dict[str, object] | None, in_flight: int) -> str:
    """Aligned plain-text table of our figures, uAgents' and the ratio."""
    def their(key: str) -> object:
        return None if theirs is None or "error" in theirs else theirs.get(key)

    def ratio(a: float, b: object, suffix: str) -> str:
        if suffix != "-" and isinstance(b, float | int) and b > 0:
            return f"{a / b:,.3f}{suffix}" if suffix == "" else f"{a / b:,.1f}{suffix}"
        return "-"

    rows: list[tuple[str, str, str, str]] = [("figure", "aaex_agents", "uAgents", "ratio")]
    http_rows: list[tuple[str, str, str | None, int, str]] = [
        (f"HTTP, {in_flight} in flight: pairs/s", "http_pairs_per_s", "pairs_per_s", 0, "x"),
        (f"HTTP, {in_flight} in flight: p50 ms", "http_tput_p50_ms", None, 2, ""),
        (f"HTTP, {in_flight} in flight: p99 ms", "http_tput_p99_ms", None, 2, ""),
        ("  client CPU us per pair", "http_tput_client_cpu_us", None, 0, ""),
        ("  echo CPU us per pair", "http_tput_echo_cpu_us", None, 0, ""),
        ("  other processes' load, cores", "http_tput_other_cores", "other_cores", 2, "-"),
        ("HTTP, sequential: pairs/s", "http_seq_pairs_per_s", "seq_pairs_per_s", 0, "x"),
        ("HTTP, sequential: p50 ms", "http_p50_ms", "p50_ms", 3, ""),
        ("HTTP, sequential: p99 ms", "http_p99_ms", "p99_ms", 3, ""),
    ]
    for label, key, their_key, digits, suffix in http_rows:
        other = their(their_key) if their_key else None
        rows.append((label, fmt(ours[key], digits), fmt(other, digits),
                     ratio(ours[key], other, suffix)))
    rows.append((f"HTTP, {in_flight} in flight, 1 KiB, pairs/s:", "", "", ""))
    for mode, what in (("signed", "signed only"), ("hpke", "sealed, HPKE key per message"),
                       ("channel", "sealed, channel key per agreement")):
        vs = "-" if mode == "signed" else f"{ours[f'http_{mode}_vs_signed']:,.3f} of signed"
        rows.append((f"  {what}", fmt(ours[f"http_{mode}_pairs_per_s"], 0), "-", vs))
    rows.append(("one process, 1 KiB, pairs/s:", "", "", ""))
    for mode, what in (("signed", "signed only"), ("hpke", "sealed, HPKE key per message"),
                       ("channel", "sealed, channel key per agreement")):
        vs = "-" if mode == "signed" else f"{ours[f'pair_{mode}_vs_signed']:,.3f} of signed"
        rows.append((f"  {what}", fmt(ours[f"pair_{mode}_per_s"], 0), "-", vs))
    rows.append(("seal+open per s (one process)", fmt(ours["seal_open_per_s"], 0), "-", "-"))
    rows.append(("raw sign+verify per s", fmt(ours["raw_sign_verify_per_s"], 0), "-", "-"))
    rows.append(("seal+open / raw sign+verify", fmt(ours["seal_open_vs_raw"], 3), "-", "-"))
    return aligned(rows, left=1)


def measure(args: argparse.Namespace) -> dict[str, float]:
    """Run every measurement `args.runs` times; return the median of each figure."""
    runs: list[HttpRun] = []
    seal_open: list[float] = []
    raw: list[float] = []
    pairs: list[dict[str, float]] = []
    for n in range(1, args.runs + 1):
        run = asyncio.run(http_run(args))
        runs.append(run)
        rates = envelope_rates(args.n_crypto, args.payload_bytes)
        seal_open.append(rates[0])
        raw.append(rates[1])
        pairs.append(pair_rates(max(200, args.n_crypto // 10)))
        progress(f"[run {n}/{args.runs}] 1 KiB pairs/s, HTTP: " + ", ".join(
            f"{mode} {run.sealed[mode]:,.0f}" for mode in MODES) + "; one process: " + ", ".join(
            f"{mode} {pairs[-1][mode]:,.0f}" for mode in MODES))
        progress(f"[run {n}/{args.runs}] http {run.tput_pairs_per_s:,.0f} pairs/s with "
                 f"{args.concurrency} in flight (CPU/pair: client {run.tput_client_cpu_us:.0f} "
                 f"us, echo {run.tput_echo_cpu_us:.0f} us; other load "
                 f"{run.tput_other_cores:.2f} cores), sequential {run.seq_pairs_per_s:,.0f}/s "
                 f"p50 {run.seq_p50_ms:.3f} ms; seal+open {seal_open[-1]:,.0f}/s, "
                 f"raw {raw[-1]:,.0f}/s ({seal_open[-1] / raw[-1]:.3f})")

    def med(get: Callable[[HttpRun], float]) -> float:
        return median_of([get(run) for run in runs])

    figures = {
        "http_pairs_per_s": med(lambda r: r.tput_pairs_per_s),
        "http_seq_pairs_per_s": med(lambda r: r.seq_pairs_per_s),
        "http_p50_ms": med(lambda r: r.seq_p50_ms),
        "http_p99_ms": med(lambda r: r.seq_p99_ms),
        "http_tput_p50_ms": med(lambda r: r.tput_p50_ms),
        "http_tput_p99_ms": med(lambda r: r.tput_p99_ms),
        "http_tput_client_cpu_us": med(lambda r: r.tput_client_cpu_us),
        "http_tput_echo_cpu_us": med(lambda r: r.tput_echo_cpu_us),
        "http_tput_other_cores": med(lambda r: r.tput_other_cores),
        "seal_open_per_s": median_of(seal_open),
        "raw_sign_verify_per_s": median_of(raw),
        "http_errors": float(sum(run.errors for run in runs)),
    }
    # Median of the per-run ratios: each pairs two loops measured side by side.
    figures["seal_open_vs_raw"] = median_of([a / b for a, b in zip(seal_open, raw, strict=True)])
    for mode in MODES:
        figures[f"http_{mode}_pairs_per_s"] = med(lambda r, m=mode: r.sealed[m])  # type: ignore[misc]
        figures[f"pair_{mode}_per_s"] = median_of([p[mode] for p in pairs])
        if mode != "signed":
            figures[f"http_{mode}_vs_signed"] = med(
                lambda r, m=mode: r.sealed[m] / r.sealed["signed"])  # type: ignore[misc]
            figures[f"pair_{mode}_vs_signed"] = median_of([p[mode] / p["signed"] for p in pairs])
    return figures


def parent_main(args: argparse.Namespace) -> int:
    """Measure, optionally run the uAgents baseline, print the table and the JSON line."""
    if args.quick:
        args.n_seq, args.n_tput, args.runs, args.warmup = 100, 500, 1, 20
        args.n_crypto = 2000
    ours = measure(args)

    theirs: dict[str, object] | None = None
    if args.uagents_python:
        script = args.uagents_script
        if script is None:
            script = REPO_ROOT / DEFAULT_UAGENTS_SCRIPT
        if script.is_file():
            progress(f"running the uAgents baseline ({args.n_seq} sequential, {args.n_tput} "
                     f"with {args.concurrency} in flight); this takes a while")
            theirs = run_uagents(args.uagents_python, script, args)
        else:
            theirs = {"error": f"uAgents baseline script not found: {script}"}

    summary: dict[str, object] = {"bench": "aaex_agents.messaging"}
    summary.update({k: round(v, 4) for k, v in ours.items()})
    summary["http_errors"] = int(ours["http_errors"])
    summary["targets"] = {"seal_open_vs_raw_min": TARGET_SEAL_OPEN_VS_RAW,
                          "seal_open_vs_raw_met": ours["seal_open_vs_raw"]
                          >= TARGET_SEAL_OPEN_VS_RAW,
                          "http_hpke_vs_signed_min": TARGET_HPKE_VS_SIGNED,
                          "http_hpke_vs_signed_met": ours["http_hpke_vs_signed"]
                          >= TARGET_HPKE_VS_SIGNED,
                          "http_channel_vs_signed_min": TARGET_CHANNEL_VS_SIGNED,
                          "http_channel_vs_signed_met": ours["http_channel_vs_signed"]
                          >= TARGET_CHANNEL_VS_SIGNED}
    if theirs is not None:
        if "error" in theirs:
            summary["uagents_error"] = theirs["error"]
            progress(str(theirs["error"]))
        else:
            pairs = float(theirs["pairs_per_s"])  # type: ignore[arg-type]
            seq_pairs = float(theirs["seq_pairs_per_s"])  # type: ignore[arg-type]
            p50 = float(theirs["p50_ms"])  # type: ignore[arg-type]
            summary.update({
                "uagents_version": theirs["version"],
                "uagents_http_pairs_per_s": round(pairs, 4),
                "uagents_http_seq_pairs_per_s": round(seq_pairs, 4),
                "uagents_http_p50_ms": round(p50, 4),
                "uagents_http_p99_ms": round(float(theirs["p99_ms"]), 4),  # type: ignore[arg-type]
                "uagents_errors": theirs["errors"],
                "uagents_other_cores": round(float(theirs["other_cores"]), 4),  # type: ignore[arg-type]
                "vs_uagents_pairs_per_s_x": round(ours["http_pairs_per_s"] / pairs, 2),
                "vs_uagents_seq_pairs_per_s_x": round(ours["http_seq_pairs_per_s"] / seq_pairs,
                                                      2),
                "vs_uagents_p50_fraction": round(ours["http_p50_ms"] / p50, 4),
            })
            summary["targets"] = {
                "pairs_per_s_x_min": TARGET_PAIRS_X,
                "pairs_per_s_x_met": ours["http_pairs_per_s"] / pairs >= TARGET_PAIRS_X,
                "p50_fraction_max": TARGET_P50_FRACTION,
                "p50_fraction_met": ours["http_p50_ms"] / p50 <= TARGET_P50_FRACTION,
                **summary["targets"],  # type: ignore[dict-item]
            }
    summary.update({
        "runs": args.runs, "n_seq": args.n_seq, "n_tput": args.n_tput,
        "concurrency": args.concurrency, "warmup": args.warmup,
        "payload_bytes": args.payload_bytes, "n_crypto": args.n_crypto,
        "aaex_agents": metadata.version("aaex-agents"), "python": platform.python_version(),
        "cpus": os.cpu_count(),
    })

    uagents_label = f"uAgents {theirs['version']}" if theirs and "version" in theirs else None
    print(f"aaex_agents messaging benchmark: {args.runs} run(s), median; {args.n_seq} "
          f"sequential, {args.n_tput} with {args.concurrency} in flight, "
          f"{args.payload_bytes}-byte payload; Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs" + (f"; vs {uagents_label} (1 run)" if uagents_label else ""))
    print()
    print(table(ours, theirs, args.concurrency))
    print()
    print(json.dumps(summary))
    return 1 if ours["http_errors"] else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.messaging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["parent", "echo"], default="parent",
                        help="internal: 'echo' runs the child process")
    parser.add_argument("--n-seq", type=int, default=500,
                        help="sequential round trips per run (default 500, as the baseline)")
    parser.add_argument("--n-tput", type=int, default=2000,
                        help="round trips with --concurrency in flight per run (default 2000, "
                        "as the baseline)")
    parser.add_argument("--concurrency", type=int, default=100,
                        help="round trips in flight in the throughput phase (default 100)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="sequential warm-up round trips per run (default 50)")
    parser.add_argument("--payload-bytes", type=int, default=64,
                        help="length of the payload string (default 64)")
    parser.add_argument("--n-crypto", type=int, default=20000,
                        help="iterations of seal+open and of raw sign+verify (default 20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported")
    parser.add_argument("--quick", action="store_true",
                        help="short smoke run: 1 run, 100 sequential, 500 in throughput")
    parser.add_argument("--uagents-python", metavar="PATH",
                        help="python of a virtual environment with uagents==0.26.1")
    parser.add_argument("--uagents-script", metavar="PATH", type=Path,
                        help=f"uAgents baseline script (default: {DEFAULT_UAGENTS_SCRIPT} "
                        "relative to the repository root, used if it exists)")
    args = parser.parse_args(argv)
    for name in ("n_seq", "n_tput", "concurrency", "runs", "n_crypto", "payload_bytes"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.messaging``."""
    args = parse_args(argv)
    if args.role == "echo":
        return asyncio.run(serve_echo())
    return parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
