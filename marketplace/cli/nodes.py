"""`aaex node run|status`: run a node until SIGTERM, or ask a running one."""

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
    status.add_argument("--admin", required=True, help="admin URL, e.g. http://127.0.0.1:8701")
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
    async def fetch() -> dict[str, object]:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(args.admin.rstrip("/") + "/status") as response:
            document: dict[str, object] = await response.json()
            return document

    try:
        status = asyncio.run(fetch())
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"aaex: no node answers at {args.admin}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status))
    else:
        for key, value in status.items():
            print(f"{key:<14} {value}")
    return 0
