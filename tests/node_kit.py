"""Marketplace nodes as real `aaex node run` processes, for the multi-operator tests."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class NodeProcess:
    """`python -m marketplace.cli --log-format json node run`; its log events are collected."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process, self.ready = process, ready
        self.events: list[dict[str, Any]] = []
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
