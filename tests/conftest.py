from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

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


WATCHDOG_GRACE_S = 60.0
"""Seconds past a test's own timeout after which its process is ended with every thread's
stack on stderr. pytest-timeout's signal can be lost (raised inside an asyncio callback,
which swallows it), and a test hung past it would otherwise hold the whole run until the
CI's limit, showing nothing; this way the worker dies, says where it hung, and the run goes
on with a fresh worker."""

_stderr: list[TextIO] = []


def pytest_configure(config: pytest.Config) -> None:
    """Keep a handle on the real stderr before output capture replaces it."""
    if not _stderr:
        _stderr.append(os.fdopen(os.dup(2), "w"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None
                            ) -> Iterator[None]:
    """Arm the watchdog for one test: its timeout (marker or ini) plus `WATCHDOG_GRACE_S`."""
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker is not None and marker.args else \
        float(item.config.getini("timeout") or 0)
    if limit > 0 and _stderr:
        faulthandler.dump_traceback_later(limit + WATCHDOG_GRACE_S, exit=True,
                                          file=_stderr[0])
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
