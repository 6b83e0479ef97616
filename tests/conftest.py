from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class PeerProcess:
    """A peer agent running in a child OS process."""

    process: asyncio.subprocess.Process
    address: str
    endpoint: str


@pytest.fixture
async def echo_process() -> AsyncIterator[PeerProcess]:
    """The Echo agent of tests/peers/echo_peer.py in its own process, on 127.0.0.1."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.echo_peer", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        info = json.loads(line)
        yield PeerProcess(process, info["address"], info["endpoint"])
    finally:
        if process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()
