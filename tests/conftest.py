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


LONGEST_FIRST = (
    "test_supply_chain_demo.py",
    "test_operators_crash.py",
    "test_discovery_network.py",
    "test_discovery_flood.py",
    "test_discovery_startup.py",
    "test_llm.py",
    "test_operators_expiry.py",
    "test_node.py",
    "test_llm_gateway.py",
    "test_llm_openai_server.py",
)
"""Test files that take longest, slowest first. The suite runs on every core (pytest-xdist,
one file per worker at a time): a long file handed out last would run alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start the longest files first (in the order above); the rest keep their order."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)
