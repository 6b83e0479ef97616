"""The `aaex` command line.

    aaex keys new agent.key [--passphrase-env VAR] [--force]
    aaex keys show agent.key [--passphrase-env VAR] [--json]
    aaex node run --config node.toml
    aaex node status --admin http://127.0.0.1:8701 [--json]
    aaex ledger show|verify data/ledger.sqlite [--json]
    aaex market search forecast.demand --seed /ip4/.../p2p/... [--where ...] [--max-price 5]
    aaex demo supply-chain [--stores 20] [--out supply-chain-demo] [--json]

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
from typing import Any

import aiohttp

from aaex_agents import AaexError, Identity

_RECORD_FIELDS = {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record, for log collectors.

    It carries time, level, logger, message, the exception, and every field passed with
    ``extra=`` (e.g. ``{"event": "task_started"}``), so events can be matched without
    parsing the message text.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname,
                                    "logger": record.name, "message": record.getMessage()}
        document.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


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


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned text columns, for humans (scripts use --json)."""
    from .console import render_table

    return render_table(headers, rows)


def _ledger_show(args: argparse.Namespace) -> int:
    from ..contracts.ledger import open_ledger

    async def read() -> tuple[dict[str, Any], list[Any]]:
        async with open_ledger(args.path) as ledger:
            balances = await ledger.balances()
            head, _ = await ledger.head()
            entries = await ledger.entries(after=max(0, head - args.limit), limit=args.limit)
            return {a: (b.available, b.held) for a, b in balances.items()}, entries

    balances, entries = asyncio.run(read())
    if args.json:
        print(json.dumps({"balances": {a: {"available": v, "held": h}
                                       for a, (v, h) in balances.items()},
                          "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash,
                                       "body": e.body} for e in entries]}))
        return 0
    print(_table(["address", "available", "held"],
                 [(a, v, h) for a, (v, h) in balances.items()]))
    print()
    print(_table(["seq", "kind", "hash", "agreement"],
                 [(e.seq, e.kind, e.hash[:16], str(e.body.get("agreement_id", ""))[:16])
                  for e in entries]))
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from ..contracts.errors import LedgerTampered
    from ..contracts.ledger import open_ledger

    async def check() -> dict[str, Any]:
        async with open_ledger(args.path) as ledger:
            report = await ledger.verify()
            return {"ok": True, "entries": report.entries, "head": report.head,
                    "agreements": report.agreements}

    try:
        result = asyncio.run(check())
    except LedgerTampered as exc:
        result = {"ok": False, "seq": exc.seq, "problem": exc.problem}
    if args.json:
        print(json.dumps(result))
    elif result["ok"]:
        print(f"ledger verified: {result['entries']} entries, {result['agreements']} "
              f"agreements, head {result['head']}")
    else:
        print(f"ledger TAMPERED at entry {result['seq']}: {result['problem']}",
              file=sys.stderr)
    return 0 if result["ok"] else 1


def _market_search(args: argparse.Namespace) -> int:
    from aaex_agents.transport.libp2p import open_libp2p_host
    from discovery.dht import open_discovery
    from discovery.query import Query, Utility, parse_where

    query = Query(args.capability, where=parse_where(args.where) if args.where else None,
                  max_price=args.max_price, limit=args.limit)

    async def search() -> list[Any]:
        async with open_libp2p_host() as host, open_discovery(host, seeds=args.seed) as found:
            return [ad for _, ad in Utility().rank(await found.lookup(query))]

    ads = asyncio.run(search())
    if args.json:
        print(json.dumps([json.loads(ad.model_dump_json()) for ad in ads]))
        return 0
    if not ads:
        print(f"no seller of {args.capability} matches")
        return 0
    print(_table(["address", "price", "p95 ms", "deadline s", "attributes"],
                 [(ad.address, f"{ad.price.amount:g} {ad.price.currency}", ad.sla.p95_ms,
                   ad.sla.deadline_s, json.dumps(ad.attributes)) for ad in ads]))
    return 0


def _demo_supply_chain(args: argparse.Namespace) -> int:
    try:
        from aaex_examples.supply_chain.demo import (
            DEMO_STEPS,
            PLANNER_LOG,
            DemoOptions,
            failures,
            run_demo,
        )
        from aaex_examples.supply_chain.summary import render_summary
    except ImportError as exc:
        print(f"aaex: the demo needs the demo extra: pip install 'aaex-agents[cpu,demo]' "
              f"({exc})", file=sys.stderr)
        return 2
    from pathlib import Path

    from .console import Progress

    options = DemoOptions(out=Path(args.out), stores=args.stores, groups=args.groups,
                          zones=args.zones, trucks=args.trucks, capacity=args.capacity,
                          llm=args.llm, kill=not args.no_kill)
    _log_to_file(options.out / PLANNER_LOG, args.verbose)
    with Progress(total=DEMO_STEPS, label="supply-chain demo") as progress:
        report = asyncio.run(run_demo(
            options, step=lambda text: progress.update(advance=1, status=text),
            note=progress.log))
    print(json.dumps(report) if args.json else render_summary(report))
    problems = failures(report)
    for problem in problems:
        print(f"aaex: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _log_to_file(path: Any, verbose: bool) -> None:
    """Send the in-process node's logs to a file: the terminal shows progress and results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    if not verbose:  # -v keeps the terminal's handler as well
        for old in root.handlers[:]:
            root.removeHandler(old)
    root.addHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `aaex`, exposed for documentation and tests."""
    parser = argparse.ArgumentParser(prog="aaex", description="AAEX agent marketplace")
    try:
        release = version("aaex-agents")
    except PackageNotFoundError:
        release = "unknown"
    parser.add_argument("--version", action="version", version=f"aaex {release}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="json: one JSON object per log line, for log collectors")
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

    ledger = commands.add_parser("ledger", help="inspect and verify a node's ledger")
    ledger_commands = ledger.add_subparsers(dest="ledger_command", required=True)
    show_ledger = ledger_commands.add_parser("show", help="balances and the latest entries")
    show_ledger.add_argument("path", help="ledger file (data_dir/ledger.sqlite)")
    show_ledger.add_argument("--limit", type=int, default=20)
    verify = ledger_commands.add_parser("verify", help="check the hash chain; exit 1 if broken")
    verify.add_argument("path")
    for sub in (show_ledger, verify):
        sub.add_argument("--json", action="store_true")
    show_ledger.set_defaults(run=_ledger_show)
    verify.set_defaults(run=_ledger_verify)

    market = commands.add_parser("market", help="search the market")
    market_commands = market.add_subparsers(dest="market_command", required=True)
    search = market_commands.add_parser("search", help="find sellers of a capability")
    search.add_argument("capability")
    search.add_argument("--seed", action="append", required=True,
                        help="multiaddr of a node to join through (repeatable)")
    search.add_argument("--where", help="attribute constraints, e.g. \"region == 'eu'\"")
    search.add_argument("--max-price", type=float)
    search.add_argument("--limit", type=int)
    search.add_argument("--json", action="store_true")
    search.set_defaults(run=_market_search)

    demo = commands.add_parser("demo", help="run an example market on this machine")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    supply = demo_commands.add_parser(
        "supply-chain", help="a planner buys forecasts and routes from four provider nodes")
    supply.add_argument("--out", default="supply-chain-demo",
                        help="folder for the report, the pictures, configs, logs and ledger")
    supply.add_argument("--stores", type=int, default=20)
    supply.add_argument("--groups", type=int, default=4, help="forecast subtasks")
    supply.add_argument("--zones", type=int, default=2, help="routing subtasks")
    supply.add_argument("--trucks", type=int, default=3)
    supply.add_argument("--capacity", type=int, help="units per truck (default: from sales)")
    supply.add_argument("--llm", choices=["llamacpp", "none"], default="llamacpp",
                        help="the model every node runs (llamacpp: the CPU model)")
    supply.add_argument("--no-kill", action="store_true",
                        help="do not kill a provider mid-task")
    supply.add_argument("--json", action="store_true", help="print the report as JSON")
    supply.set_defaults(run=_demo_supply_chain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aaex` console script."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if args.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        logging.basicConfig(level=level, handlers=[handler])
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.run(args)
    except AaexError as exc:
        print(f"aaex: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
