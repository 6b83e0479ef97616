"""`aaex market search`: find sellers of a capability through the DHT."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from .console import render_table


def register(commands: Any) -> None:
    """Add `market` to the CLI's subcommands."""
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
    print(render_table(["address", "price", "p95 ms", "deadline s", "attributes"],
                 [(ad.address, f"{ad.price.amount:g} {ad.price.currency}", ad.sla.p95_ms,
                   ad.sla.deadline_s, json.dumps(ad.attributes)) for ad in ads]))
    return 0
