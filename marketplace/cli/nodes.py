"""`aaex node run|status`: run a node until SIGTERM, or ask a running one.

`status` shows what an operator checks first: the node's state, its agents, the ads it
publishes, each agent's money (in credits) and the agreements still open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import aiohttp


def register(commands: Any) -> None:
    """Add `node` to the CLI's subcommands."""
    node = commands.add_parser("node", help="run or inspect a marketplace node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a node until SIGTERM")
    run.add_argument("--config", required=True, help="node TOML file")
    run.set_defaults(run=_node_run)
    status = node_commands.add_parser("status", help="ask a running node's admin API")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--admin", help="admin URL, e.g. http://127.0.0.1:8701")
    where.add_argument("--config", help="the node's TOML file (finds its admin URL)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_node_status)



def _node_run(args: argparse.Namespace) -> int:
    from ..node.config import load_config
    from ..node.node import open_node

    config = load_config(args.config)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with open_node(config) as node:
            print(json.dumps({"ready": True, **node.status()}), flush=True)
            await stop.wait()

    asyncio.run(run())
    return 0


def _node_status(args: argparse.Namespace) -> int:
    from ..node.accounts import AdminAccess
    from ..node.config import load_config
    from .admin_client import AdminRefused, must_run, reach, request

    async def fetch() -> dict[str, Any]:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = AdminAccess(args.admin.rstrip("/"), "", "")
        views = ("/status", "/agents", "/ads", "/accounts", "/agreements")
        answers = await asyncio.gather(*(request(access, "GET", v, timeout=10) for v in views))
        status, agents, ads, accounts, agreements = answers
        return {**status, "hosted_agents": agents, "ads": ads["published"], "accounts": accounts,
                "open_agreements": [a for a in agreements if a["verdict"] == "open"]}

    try:
        status = asyncio.run(fetch())
    except (aiohttp.ClientError, TimeoutError, AdminRefused) as exc:
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
                if key not in ("hosted_agents", "ads", "accounts", "open_agreements")]
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
    return "\n".join(sections)
