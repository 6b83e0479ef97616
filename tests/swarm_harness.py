"""Drive `python -m discovery.swarm` worker processes from a test."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class SwarmProcess:
    """One worker OS process hosting several discovery nodes."""

    def __init__(self, process: asyncio.subprocess.Process, ready: dict[str, Any]) -> None:
        self.process = process
        self.ready = ready
        self.nodes: list[dict[str, str]] = ready["nodes"]

    @classmethod
    async def start(cls, nodes: int, seeds: list[str] = (), *, shards: int = 4,  # type: ignore[assignment]
                    refresh_period: float = 300.0, timeout: float = 120) -> SwarmProcess:
        args = [sys.executable, "-m", "discovery.swarm", "--nodes", str(nodes),
                "--shards", str(shards), "--refresh-period", str(refresh_period)]
        for seed in seeds:
            args += ["--seed", seed]
        process = await asyncio.create_subprocess_exec(
            *args, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=timeout)
        if not line:
            raise RuntimeError(f"swarm worker exited with {await process.wait()}")
        return cls(process, json.loads(line))

    async def call(self, op: str, timeout: float = 120, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=timeout)
        if not line:
            raise RuntimeError(f"swarm worker died during {op}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def stop(self) -> int:
        if self.process.returncode is not None:
            return self.process.returncode
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b'{"op": "quit"}\n')
            await self.process.stdin.drain()
            self.process.stdin.close()
            return await asyncio.wait_for(self.process.wait(), timeout=30)
        except (TimeoutError, ConnectionError):
            self.process.kill()
            return await self.process.wait()

    def kill(self) -> None:
        self.process.kill()
