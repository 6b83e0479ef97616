"""Marketplace nodes as real `aaex node run` processes, for the multi-operator tests."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketplace.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


class NodeProcess:
    """`python -m marketplace.cli --log-format json node run`; its log events are collected."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process, self.ready = process, ready
        self.events: list[dict[str, Any]] = []
        self.unstructured: list[str] = []
        """Lines on its stderr that are not JSON log records (a traceback's, say)."""
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, config: Path, *, crash_at: str | None = None,
                    lie: str | None = None) -> NodeProcess:
        """Start the node; with `crash_at`, it SIGKILLs itself the moment it logs that event
        (tests/peers/crash_on_event.py), exactly between that step and the next; with `lie`,
        its agents sign facts that lie that way (tests.peers.lying_party.py)."""
        command = (["-m", "tests.peers.crash_on_event", crash_at] if crash_at is not None
                   else ["-m", "tests.peers.lying_party", lie] if lie is not None
                   else ["-m", "marketplace.cli"])
        process = await asyncio.create_subprocess_exec(
            sys.executable, *command, "--log-format", "json", "node", "run",
            "--config", str(config), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line, "the node exited before it was ready"
        return cls(process, json.loads(line))

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.unstructured.append(line.decode(errors="replace"))
                continue
            self._new.set()

    async def event(self, name: str, timeout: float = 30, *, since: int = 0) -> dict[str, Any]:
        """Wait for the first log record with ``event == name`` from record `since` on."""
        async with asyncio.timeout(timeout):
            while True:
                for record in self.events[since:]:
                    if record.get("event") == name:
                        return record
                self._new.clear()
                await self._new.wait()

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), 60)
        await asyncio.wait_for(self._reader, 10)
        return code


@asynccontextmanager
async def running_node(config: Path, *, lie: str | None = None) -> AsyncIterator[NodeProcess]:
    """A node for the block; SIGTERM at the end, and it must stop cleanly (exit 0) unless
    the test already stopped or killed it. `lie`: see `NodeProcess.start`."""
    node = await NodeProcess.start(config, lie=lie)
    try:
        yield node
    finally:
        if node.process.returncode is None:
            try:
                assert await node.stop() == 0
            except TimeoutError:
                node.process.kill()
                raise


async def aaex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `aaex ARGV` as an operator would (off the event loop: the CLI runs its own)."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass(frozen=True)
class Operators:
    """Two operators' folders: a buyer (agent ``shopper``) and a seller, and the task file."""

    buyer_toml: Path
    seller_toml: Path
    task: Path

    def books(self, side: str) -> Path:
        """The ledger file of ``buyer`` or ``seller``."""
        toml = self.buyer_toml if side == "buyer" else self.seller_toml
        return toml.parent / "data" / "ledger.sqlite"


def two_operators(tmp_path: Path, task: dict[str, Any], buyer_toml: str) -> Operators:
    """Folders ``buyer`` and ``seller`` under `tmp_path`, the buyer's config and the task
    written (the seller's config usually needs the buyer's address: the test writes it)."""
    for side in ("seller", "buyer"):
        (tmp_path / side).mkdir()
    ops = Operators(tmp_path / "buyer" / "node.toml", tmp_path / "seller" / "node.toml",
                    tmp_path / "task.json")
    ops.buyer_toml.write_text(buyer_toml)
    ops.task.write_text(json.dumps(task))
    return ops


async def buy_until(capsys: pytest.CaptureFixture[str], ops: Operators, capability: str, *,
                    budget: str, deadline: str, done: Callable[[int, str], bool],
                    tries: int = 20) -> tuple[int, str]:
    """`aaex market buy` until `done(exit code, output)`: the seller's ad may take a few
    tries to reach the buyer's DHT. Returns the last exit code and output (stdout + stderr)."""
    for _ in range(tries):
        code, out, err = await aaex(capsys, "market", "buy", capability, "--config",
                                    str(ops.buyer_toml), "--agent", "shopper", "--task",
                                    str(ops.task), "--budget", budget, "--deadline", deadline)
        if done(code, out + err):
            break
    return code, out + err
