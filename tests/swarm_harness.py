"""Drive `python -m tests.swarm` worker processes from a test."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aaex_agents.testing import JsonLinesProcess

ROOT = Path(__file__).resolve().parent.parent


class SwarmProcess:
    """One worker OS process hosting several discovery nodes."""

    def __init__(self, child: JsonLinesProcess) -> None:
        self.child = child
        self.process = child.process
        self.ready = child.ready
        self.nodes: list[dict[str, str]] = child.ready["nodes"]

    @classmethod
    async def start(cls, nodes: int, seeds: Sequence[str] = (), *, shards: int = 4,
                    refresh_period: float = 300.0, **index_limits: int) -> SwarmProcess:
        """Start a worker; `index_limits` are IndexLimits fields, e.g. max_total=50."""
        args = [sys.executable, "-m", "tests.swarm", "--nodes", str(nodes),
                "--shards", str(shards), "--refresh-period", str(refresh_period)]
        for name, value in index_limits.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        for seed in seeds:
            args += ["--seed", seed]
        return cls(await JsonLinesProcess.start(args, cwd=ROOT))

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        return await self.child.call({"op": op, **args})

    async def stop(self) -> int:
        return await self.child.stop()

    def kill(self) -> None:
        self.child.kill()
