"""How a command reaches a node: its admin API while it runs, its files while it is stopped.

A running node leaves its admin URL and a token in its data dir (marketplace.node.accounts).
`reach` finds them and checks that the node answering at that URL is the configured one;
a node that was killed leaves a stale ``admin.json``, which `reach` treats as not running.
Commands that only need the books (deposit, withdraw, show, statement) then work on the
ledger file; commands that need the network (reconcile, buy) say the node is not running.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents import AaexError, Identity
from aaex_agents.errors import KeyFileError, UsageError

from ..node.accounts import INFO_FILE, AdminAccess, find_admin
from ..node.config import NodeConfig

STATUS_TIMEOUT_S = 3.0
MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest progress line read (the last one carries the purchased result)."""


class AdminRefused(AaexError):
    """The node's admin API refused the request; the message is its one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        super().__init__(reason)


class NodeNotRunning(AaexError):
    """The command needs the running node, and none answers."""


class NodeLost(AaexError):
    """The node could not be reached, or stopped answering mid-request (it died, say).

    The message is one line naming the cause, so a purchase cut off by a dying node ends in
    that line, not a traceback from inside aiohttp (``aaex -v`` shows the traceback).
    """


def _lost(access: AdminAccess, exc: BaseException, timeout: float) -> NodeLost:
    """Name why the node at `access` gave no (whole) answer."""
    if isinstance(exc, aiohttp.InvalidURL):
        return NodeLost(f"{access.url} is not a URL; write one like http://127.0.0.1:8701")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NodeLost(f"cannot reach the node at {access.url} "
                        f"({exc.os_error.strerror or exc.os_error})")
    if isinstance(exc, TimeoutError):
        return NodeLost(f"the node at {access.url} did not answer within {timeout:g} s")
    if isinstance(exc, ValueError):
        return NodeLost(f"the answer at {access.url} is not the admin API's JSON ({exc})")
    return NodeLost(f"the node at {access.url} stopped answering mid-request (did it stop?): "
                    f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Reached:
    """Where a command found its node: `access` when it runs, else why not."""

    access: AdminAccess | None
    why_not: str


async def reach(config: NodeConfig) -> Reached:
    """The running node's admin API, or None and a sentence saying why not."""
    access = find_admin(config.node.data_dir)
    if access is None:
        return Reached(None, f"node not running (no {config.node.data_dir / INFO_FILE})")
    try:
        status = await request(access, "GET", "/status", timeout=STATUS_TIMEOUT_S)
    except (NodeLost, AdminRefused):
        return Reached(None, f"node not running at {access.url} (stale {INFO_FILE})")
    try:
        expected = Identity.load(config.node.identity).address
    except KeyFileError:
        expected = access.node
    if not isinstance(status, dict) or status.get("node") != expected:
        return Reached(None, f"another node answers at {access.url}, not {expected}")
    return Reached(access, "")


def must_run(reached: Reached) -> AdminAccess:
    """The admin API of a node that must be running.

    Raises:
        NodeNotRunning: it is not; the message says where it was looked for.
    """
    if reached.access is None:
        raise NodeNotRunning(f"{reached.why_not}; start it with `aaex node run --config ...`")
    return reached.access


def explicit_access(url: str, token_file: str | None) -> AdminAccess:
    """An admin API named on the command line (``--admin URL --token-file FILE``).

    Raises:
        UsageError: the token file cannot be read.
    """
    token = ""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--token-file {token_file}: {exc.strerror}") from None
    return AdminAccess(url.rstrip("/"), token, "")


def _refusal(status: int, text: str) -> AdminRefused:
    try:
        reason = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        reason = text.strip() or f"HTTP {status}"
    return AdminRefused(status, f"the node refused ({status}): {reason}")


async def request(access: AdminAccess, method: str, path: str, *,
                  body: dict[str, Any] | None = None, params: dict[str, str] | None = None,
                  timeout: float = 30.0) -> Any:
    """One admin API call; the decoded JSON answer.

    Raises:
        AdminRefused: the answer is an error (its one-line reason).
        NodeLost: nobody answered, the answer broke off, or it was not JSON.
    """
    headers = {"Authorization": f"Bearer {access.token}"} if access.token else {}
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.request(method, access.url + path, json=body, params=params,
                                headers=headers) as response:
            text = await response.text()
            if response.status >= 400:
                raise _refusal(response.status, text)
            return json.loads(text)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _lost(access, exc, timeout) from exc


@asynccontextmanager
async def stream(access: AdminAccess, path: str, body: dict[str, Any], *,
                 timeout: float) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """POST `body` and read the answer as JSON lines, as they come.

    Raises:
        AdminRefused: the node refused the request before it began.
        NodeLost: nobody answered, or the answer broke off (the node died mid-purchase).
    """
    headers = {"Authorization": f"Bearer {access.token}"} if access.token else {}
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
                session.post(access.url + path, json=body, headers=headers) as response:
            if response.status >= 400:
                raise _refusal(response.status, await response.text())

            async def lines() -> AsyncIterator[dict[str, Any]]:
                while raw := await response.content.readuntil(b"\n", max_size=MAX_LINE_BYTES):
                    if raw.strip():
                        yield json.loads(raw)
            yield lines()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise _lost(access, exc, timeout) from exc


def note(text: str) -> None:
    """A remark for the person at the terminal, kept out of the command's output."""
    print(f"aaex: {text}", file=sys.stderr)
