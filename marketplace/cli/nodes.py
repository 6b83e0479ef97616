"""`aaex node run|status`: run a node until SIGTERM, or ask a running one.

`status` shows what an operator checks first: the node's state, its agents, the ads it
publishes, each agent's money (in credits) and the agreements still open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from typing import Any

from aaex_agents.errors import AaexError


def register(commands: Any) -> None:
    """Add `node` to the CLI's subcommands."""
    node = commands.add_parser("node", help="run or inspect a marketplace node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a node until SIGTERM")
    run.add_argument("--config", required=True, help="node TOML file")
    run.set_defaults(run=node_run)
    status = node_commands.add_parser("status", help="ask a running node's admin API")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--admin", help="admin URL, e.g. http://127.0.0.1:8701")
    where.add_argument("--config", help="the node's TOML file (finds its admin URL)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_node_status)



def node_run(args: argparse.Namespace) -> int:
    """Run the node of `args.config` until SIGTERM or SIGINT; 2 with one line on failure."""
    from ..node.config import load_config
    from ..node.ports import check_ports

    # Before libp2p is imported: a bad config or a taken port fails in half a second.
    config = load_config(args.config)
    asyncio.run(check_ports(config))
    from ..node.node import open_node

    _raise_open_file_limit()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with open_node(config) as node:
            print(json.dumps({"ready": True, **node.status()}), flush=True)
            await stop.wait()

    try:
        asyncio.run(run())
    except BaseExceptionGroup as group:  # a listener that failed inside the runtime's tasks
        reason = _one_reason(group)
        if reason is None:
            raise
        print(f"aaex: {reason}", file=sys.stderr)
        return 2
    return 0


def _one_reason(group: BaseExceptionGroup[BaseException]) -> AaexError | None:
    """The AAEX error behind `group` when it holds nothing else (then one line says it)."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop()
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
        else:
            leaves.append(exc)
    if leaves and all(isinstance(exc, AaexError) for exc in leaves):
        reason: AaexError = leaves[0]  # type: ignore[assignment]
        return reason
    return None


OPEN_FILES_WANTED = 65536


def _raise_open_file_limit() -> None:
    """Lift the soft open-file limit towards the hard one: each connection is a descriptor.

    Many systems start processes at 1024, under what a node's listeners may hold by their
    connection limits (see docs/security.md); servers raise it themselves, as this does.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard,
                                                                          OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):  # the node warns at start if it stays too low
            return


def _node_status(args: argparse.Namespace) -> int:
    from ..node.accounts import AdminAccess
    from ..node.config import load_config
    from .admin_client import AdminRefused, NodeLost, must_run, reach, request

    async def fetch() -> dict[str, Any]:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = AdminAccess(args.admin.rstrip("/"), "", "")
        views = ("/status", "/agents", "/ads", "/accounts", "/agreements", "/bans")
        answers = await asyncio.gather(*(request(access, "GET", v, timeout=10) for v in views))
        status, agents, ads, accounts, agreements, bans = answers
        return {**status, "hosted_agents": agents, "ads": ads["published"], "accounts": accounts,
                "open_agreements": [a for a in agreements if a["verdict"] == "open"],
                "bans": bans}

    try:
        status = asyncio.run(fetch())
    except (NodeLost, AdminRefused) as exc:
        print(f"aaex: no node answers at {args.admin or args.config}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status))
        return 0
    print(_render_status(status))
    return 0


def _render_status(status: dict[str, Any]) -> str:
    from .console import render_table

    sections = [f"{key:<14} {value}" for key, value in status.items()
                if key not in ("hosted_agents", "ads", "accounts", "open_agreements", "bans")]
    sections += ["", "agents", render_table(
        ["name", "class", "capability", "address"],
        [(a["name"], a["class"], a.get("capability") or "-", a["address"])
         for a in status["hosted_agents"]])]
    sections += ["", "ads published", render_table(
        ["capability", "index nodes holding it"],
        [(a["capability"], a["acknowledged_by"]) for a in status["ads"]])]
    sections += ["", "accounts (credits)", render_table(
        ["agent", "available", "held", "receivable", "payable"],
        [(a["agent"], a["available"], a["held"], a["receivable"], a["payable"])
         for a in status["accounts"]], align="lrrrr")]
    open_ = status["open_agreements"]
    sections += ["", "open agreements", render_table(
        ["agreement", "side", "capability", "price", "buyer", "seller"],
        [(a["id"][:16], a["side"], a["capability"], a["price"], a["buyer"][:20] + "…",
          a["seller"][:20] + "…") for a in open_], align="lllrll") if open_ else "none"]
    bans = status["bans"]
    sections += ["", "sellers banned by our buyers (backoff)", render_table(
        ["agent", "seller", "reason", "failures", "expires in (s)"],
        [(b["agent"], b["seller"], b["reason"], b["failures"], b["expires_in_s"])
         for b in bans], align="lllrr") if bans else "none"]
    return "\n".join(sections)
