"""The `aaex` command line.

    aaex keys new agent.key [--passphrase-env VAR] [--force]
    aaex keys show agent.key [--passphrase-env VAR] [--json]
    aaex node run --config node.toml
    aaex node status --config node.toml | --admin http://127.0.0.1:8701 [--json]
    aaex account deposit|withdraw --config node.toml AGENT CREDITS
    aaex account show --config node.toml [--json]
    aaex account statement|reconcile --config node.toml --with ADDRESS [--json]
    aaex ledger show|verify data/ledger.sqlite [--json] [--against CHECKPOINT]
    aaex ledger checkpoint --config node.toml [--out FILE]
    aaex market search forecast.demand --config node.toml | --admin URL | --seed /ip4/.../p2p/...
        [--where ...] [--max-price 5]
    aaex market buy forecast.demand --config node.toml --agent NAME --task task.json
        --budget 5 --deadline 60 [--where ...] [--json]
    aaex dispute list|show|export|resolve --config node.toml [AGREEMENT_ID] [...]
    aaex dispute verify FILE | decide FILE --key ARBITER.key --to-seller CREDITS --out OUT
    aaex grant issue|show|export|revoke ... (see grants)
    aaex provenance verify FILE [--task task.json]
    aaex audit log|verify --config node.toml | --admin URL [--json]
    aaex audit prove --config node.toml INDEX [--size M] | --first A [--second B] [--json]
    aaex consensus show --config node.toml | --admin URL [--epoch N] [--json]
    aaex validator status --config node.toml | --admin URL [--json]
    aaex demo supply-chain [--stores 20] [--out supply-chain-demo] [--json]

One module per command group (`keys`, `nodes`, `account`, `ledger`, `market`, `disputes`,
`grants`, `audit`, `consensus`, `demos`),
each adding its subcommands with `register`; `admin_client` is how a command reaches a
running node (or finds it stopped). The CLI is the application: it alone configures logging
(`logs`) and calls `asyncio.run`.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from aaex_agents import AaexError

from . import (
    account,
    audit,
    consensus,
    demos,
    disputes,
    grants,
    keys,
    ledger,
    logs,
    market,
    nodes,
)


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
    for group in (keys, nodes, account, ledger, market, disputes, grants, audit, consensus,
                  demos):
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aaex` console script."""
    args = build_parser().parse_args(argv)
    logs.configure(verbose=args.verbose, log_format=args.log_format)
    try:
        code: int = args.run(args)
    except AaexError as exc:
        if args.verbose:  # the one line names the cause; -v also shows where it came from
            traceback.print_exc()
        print(f"aaex: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
