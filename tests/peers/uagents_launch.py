"""Start tests/peers/uagents_peer.py (a real uAgents agent) and drive it; for tests and bench.

    async with run_uagents_peer(python, seed="peer", rules={addr: url}) as peer:
        answer = await peer.command(to=addr, kind="ping", text="hi", sync=True)

`python` is an interpreter with uagents==0.26.1 (``$AAEX_UAGENTS_PYTHON``); it cannot be this
one, which has libp2p.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

SCRIPT = Path(__file__).resolve().parent / "uagents_peer.py"


@dataclass
class UAgentsPeer:
    """A running uAgents peer: its address, its ``/submit`` URL and its control API."""

    process: asyncio.subprocess.Process
    address: str
    endpoint: str
    base_url: str
    session: aiohttp.ClientSession

    async def command(self, *, to: str, kind: str, text: str, wait: bool = True,
                      sync: bool = False, timeout: int = 20) -> dict[str, Any]:
        """Have the peer send `kind` ("chat" or "ping") to `to`; its CmdResult as a dict."""
        payload = {"to": to, "kind": kind, "text": text, "wait": wait, "sync": sync,
                   "timeout": timeout}
        async with asyncio.timeout(timeout + 10), self.session.post(
                f"{self.base_url}/cmd", json=payload) as response:
            result: dict[str, Any] = await response.json(content_type=None)
            return result

    async def bench(self, *, to: str, n: int, sync: bool) -> dict[str, Any]:
        """Have the peer time `n` sequential Ping -> Pong round trips to `to`."""
        payload = {"to": to, "n": n, "sync": sync}
        async with asyncio.timeout(60 + n), self.session.post(
                f"{self.base_url}/bench", json=payload) as response:
            result: dict[str, Any] = await response.json(content_type=None)
            return result

    async def log(self) -> list[dict[str, Any]]:
        """What the peer's handlers received so far."""
        async with asyncio.timeout(10), self.session.get(f"{self.base_url}/log") as response:
            entries: list[dict[str, Any]] = (await response.json(content_type=None))["entries"]
            return entries


def uagents_address_of_seed(seed: str) -> str:
    """The address uAgents gives `Agent(seed=seed)` (index 0), computed without uAgents."""
    import hashlib

    from aaex_agents.interop import UAgentsKey

    def sha(data: bytes) -> bytes:
        return hashlib.sha256(data).digest()

    return UAgentsKey(sha(sha(b"agent\x00") + sha(seed.encode()))).address


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (uvicorn cannot report a port-0 choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_ready(session: aiohttp.ClientSession, endpoint: str, address: str,
                      process: asyncio.subprocess.Process) -> None:
    """Poll uAgents' HEAD readiness probe: its startup hooks run before uvicorn listens."""
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"the uAgents peer exited with {process.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.head(endpoint,
                                    headers={"x-uagents-address": address}) as response:
                if response.headers.get("x-uagents-status") == "ready":
                    return
        await asyncio.sleep(0.05)


@asynccontextmanager
async def run_uagents_peer(python: str, *, seed: str, rules: Mapping[str, str],
                           name: str = "uagents-peer", port: int | None = None,
                           timeout: float = 90.0) -> AsyncIterator[UAgentsPeer]:
    """Run the peer until the block exits (then close its stdin and wait for it).

    `port` defaults to a free one; give it when the peer's URL must be known beforehand.
    """
    port = port or free_port()
    settings = json.dumps({"seed": seed, "port": port, "rules": dict(rules), "name": name})
    process = await asyncio.create_subprocess_exec(
        python, str(SCRIPT), settings, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)
    if process.stdout is None or process.stdin is None:
        raise RuntimeError("no pipes to the uAgents peer")
    stdout = process.stdout

    async def drain() -> None:  # uAgents logs on stdout; never let the pipe fill up
        while await stdout.readline():
            pass

    draining: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = await stdout.readline()
                if not line:
                    raise RuntimeError(f"the uAgents peer exited with {await process.wait()}")
                if line.startswith(b'{"address"'):
                    info = json.loads(line)
                    break
        draining = asyncio.create_task(drain(), name="uagents-peer.stdout")
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(timeout):
                await _wait_ready(session, info["endpoint"], info["address"], process)
            yield UAgentsPeer(process, info["address"], info["endpoint"],
                              f"http://127.0.0.1:{port}", session)
    finally:
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()
        if draining is not None:
            draining.cancel()
