"""``aaex consensus show``: what the validators' consensus says of each capability's sellers.

    aaex consensus show --config node.toml | --admin URL [--epoch N] [--json]

Asks the running node (``GET /consensus``): per capability, the epoch and every seller's
incentive (its share of the emission) and quality (incentive over the best seller's, which
the node's awards blend with receipt reputation; docs/consensus.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .admin_client import explicit_access, must_run, reach, request
from .console import render_table


def register(commands: Any) -> None:
    """Add `consensus` to the CLI's subcommands."""
    group = commands.add_parser("consensus", help="the validators' consensus on sellers")
    sub = group.add_subparsers(dest="consensus_command", required=True)
    show = sub.add_parser("show", help="each seller's incentive and quality, per capability")
    through = show.add_mutually_exclusive_group(required=True)
    through.add_argument("--config", help="the running node's TOML file")
    through.add_argument("--admin", help="the running node's admin URL")
    show.add_argument("--epoch", type=int, help="an epoch the node still keeps "
                      "(default: the latest)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_show)


def _show(args: argparse.Namespace) -> int:
    from ..node.config import load_config

    params = {} if args.epoch is None else {"epoch": str(args.epoch)}

    async def ask() -> dict[str, Any]:
        if args.config is not None:
            access = must_run(await reach(load_config(args.config)))
        else:
            access = explicit_access(args.admin, None)
        document: dict[str, Any] = await request(access, "GET", "/consensus", params=params)
        return document

    document = asyncio.run(ask())
    if args.json:
        print(json.dumps(document))
        return 0
    if not document:
        print("no consensus computed" + ("" if args.epoch is None else
                                         f" for epoch {args.epoch}"))
        return 0
    for capability, standing in document.items():
        print(f"{capability}, epoch {standing['epoch']}")
        print(render_table(["seller", "incentive", "quality"],
                           [(s["seller"], f"{s['incentive']:.4f}", f"{s['quality']:.4f}")
                            for s in standing["sellers"]], align="lrr"))
    return 0
