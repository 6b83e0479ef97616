"""The demo's provider nodes: `aaex node run` child processes that die with the demo.

Each provider is its own node process, started from a config the demo wrote. The demo reads
the node's ready line (its status as JSON on stdout), copies its JSON log lines from stderr
to ``<name>.log`` and reports the structured events in them (the kill watches for
``task_started``). A node that was killed can be started again from the same config and data
dir: same key, same agent key, same ledger.

No orphans. On Linux every child asks the kernel, between fork and exec, to SIGKILL it when
the demo dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, kept across exec), then checks that the
demo did not die before it asked. The kernel does this even when the demo itself is
SIGKILLed and no cleanup of ours runs, which a pipe watched by the child or an ``atexit``
handler would need code in the node for, or would miss. The signal follows the *thread* that
started the child: the demo starts its children from the event loop's thread, which lives as
long as the demo. Elsewhere than Linux the children are stopped when the demo exits normally
or is interrupted, not when it is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents.errors import AaexError

PR_SET_PDEATHSIG = 1
"""From <linux/prctl.h>."""

NODES_FILE = "nodes.json"
"""Written to the output folder once the providers run: their names, PIDs, admin URLs."""

EventSink = Callable[["ProviderNode", dict[str, Any]], None]


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive SIGKILL when this process dies (Linux).

    None elsewhere (no such kernel feature). The function the child calls is resolved here,
    in the parent, so the child runs no import and no symbol lookup between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL),
              ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
        if os.getppid() != parent:  # the demo died before the line above took effect
            os._exit(1)
    return arm


@dataclass(frozen=True)
class ProviderSpec:
    """One provider node of the demo."""

    name: str
    agent_class: str
    cost: float
    exponent: float
    latency_ms: float
    deadline_s: float = 240.0
    also_train: bool = False
    """A forecaster that also tries to train on the data it is granted for forecasting."""


@dataclass
class ProviderNode:
    """A provider node running as a child process (started again after a kill)."""

    spec: ProviderSpec
    config: Path
    log: Path
    process: asyncio.subprocess.Process | None = None
    status: dict[str, Any] = field(default_factory=dict)
    address: str = ""
    killed_at: float | None = None
    restarted_at: float | None = None
    pump: asyncio.Task[None] | None = None

    async def start(self, on_event: EventSink) -> None:
        """Start the node process and copy its log; `ready` waits until it serves."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "marketplace.cli", "--log-format", "json", "node", "run",
            "--config", str(self.config), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=die_with_parent())
        self.pump = asyncio.create_task(self._pump(self.process, on_event),
                                        name=f"demo.pump.{self.spec.name}")

    @property
    def running(self) -> asyncio.subprocess.Process:
        """The process; a bug here, not bad input, when it was never started."""
        if self.process is None:
            raise AaexError(f"{self.spec.name} was never started")
        return self.process

    async def ready(self, timeout: float) -> None:
        """Wait for the node's ready line, then learn its agent's address from its admin API.

        Raises:
            AaexError: it did not start in `timeout` seconds, or exited while starting.
        """
        process = self.running
        try:
            line = await asyncio.wait_for(_pipe(process.stdout).readline(), timeout)
        except TimeoutError:
            raise AaexError(f"{self.spec.name} did not start within {timeout:.0f} s; "
                            f"see {self.log}") from None
        if not line:
            await process.wait()
            raise AaexError(f"{self.spec.name} exited ({process.returncode}) while starting;"
                            f" see {self.log}")
        self.status = json.loads(line)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
                session.get(self.status["admin"].rstrip("/") + "/agents") as response:
            agents = await response.json()
        self.address = agents[0]["address"]

    def kill(self, at: float) -> None:
        """SIGKILL: no goodbye, whatever task it performs is lost mid-way."""
        self.running.kill()
        self.killed_at = at

    async def restart(self, on_event: EventSink, timeout: float, at: Callable[[], float]
                      ) -> None:
        """Once the killed process is gone, start the node again: same config, same data."""
        await self.running.wait()
        if self.pump is not None:
            await asyncio.gather(self.pump, return_exceptions=True)
        await self.start(on_event)
        await self.ready(timeout)
        self.restarted_at = at()

    async def stop(self) -> None:
        """SIGTERM, then wait (the node withdraws its ads and drains); SIGKILL if stuck."""
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self.pump is not None:
            await asyncio.gather(self.pump, return_exceptions=True)

    async def _pump(self, process: asyncio.subprocess.Process, on_event: EventSink) -> None:
        """Copy the child's JSON log lines to its log file, reporting structured events."""
        with self.log.open("ab") as sink:
            async for line in _pipe(process.stderr):
                sink.write(line)
                sink.flush()
                if b'"event"' in line:
                    with contextlib.suppress(ValueError):
                        on_event(self, json.loads(line))


def _pipe(stream: asyncio.StreamReader | None) -> asyncio.StreamReader:
    if stream is None:  # the child was started without this pipe: a bug here, not bad input
        raise AaexError("a provider node's output is not piped to the demo")
    return stream


def write_nodes_file(folder: Path, nodes: list[ProviderNode]) -> None:
    """Say which processes run the providers (replaced whole, so a reader never sees half)."""
    document = {"demo_pid": os.getpid(), "providers": [
        {"name": n.spec.name, "pid": n.process.pid if n.process else None,
         "config": str(n.config), "admin": n.status.get("admin"), "address": n.address}
        for n in nodes]}
    partial = folder / (NODES_FILE + ".partial")
    partial.write_text(json.dumps(document, indent=1))
    os.replace(partial, folder / NODES_FILE)
