"""The `aaex` command line.

    aaex keys new agent.key [--passphrase-env VAR] [--force]
    aaex keys show agent.key [--passphrase-env VAR] [--json]
    aaex node run --config node.toml
    aaex node status --admin http://127.0.0.1:8701 [--json]

The CLI is the application: it alone configures logging and calls `asyncio.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import aiohttp

from aaex_agents import AaexError, Identity


def _passphrase(variable: str | None) -> str | None:
    if variable is None:
        return None
    value = os.environ.get(variable)
    if value is None:
        raise SystemExit(f"aaex: --passphrase-env names {variable}, but it is not set")
    return value


def _keys_new(args: argparse.Namespace) -> int:
    if os.path.exists(args.path) and not args.force:
        print(f"aaex: {args.path} already exists; pass --force to replace it", file=sys.stderr)
        return 2
    identity = Identity.generate()
    path = identity.save(args.path, passphrase=_passphrase(args.passphrase_env),
                         overwrite=args.force)
    if args.json:
        print(json.dumps({"address": identity.address, "path": str(path)}))
    else:
        print(f"address  {identity.address}\nkey file {path} (mode 0600"
              f"{', sealed' if args.passphrase_env else ''})")
    return 0


def _keys_show(args: argparse.Namespace) -> int:
    identity = Identity.load(args.path, passphrase=_passphrase(args.passphrase_env))
    if args.json:
        print(json.dumps({"address": identity.address,
                          "public_key": identity.public_key.hex()}))
    else:
        print(f"address    {identity.address}\npublic key {identity.public_key.hex()}")
    return 0


def _node_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .node import open_node

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `aaex`, exposed for documentation and tests."""
    parser = argparse.ArgumentParser(prog="aaex", description="AAEX agent marketplace")
    try:
        release = version("aaex-agents")
    except PackageNotFoundError:
        release = "unknown"
    parser.add_argument("--version", action="version", version=f"aaex {release}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="create and inspect agent keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = key_commands.add_parser("new", help="generate a key and write it with mode 0600")
    new.add_argument("path")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    show = key_commands.add_parser("show", help="print the address of a key file")
    show.add_argument("path")
    for sub in (new, show):
        sub.add_argument("--passphrase-env", metavar="VAR",
                         help="seal/open the key with the passphrase in environment variable VAR")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    new.set_defaults(run=_keys_new)
    show.set_defaults(run=_keys_show)

    node = commands.add_parser("node", help="run or inspect a marketplace node")
    node_commands = node.add_subparsers(dest="node_command", required=True)
    run = node_commands.add_parser("run", help="run a node until SIGTERM")
    run.add_argument("--config", required=True, help="node TOML file")
    run.set_defaults(run=_node_run)
    status = node_commands.add_parser("status", help="ask a running node's admin API")
    status.add_argument("--admin", required=True, help="admin URL, e.g. http://127.0.0.1:8701")
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_node_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aaex` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.run(args)
    except AaexError as exc:
        print(f"aaex: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
