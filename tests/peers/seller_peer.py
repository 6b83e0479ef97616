"""A negotiating seller in its own OS process (HTTP on 127.0.0.1), for market tests.

    python -m tests.peers.seller_peer --cost 2.0 --exponent 4 [--latency 400]

Prints one JSON line {"address", "endpoint"} once listening; exits 0 when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aaex_agents import HttpTransport, Identity, open_runtime
from marketplace.contracting import seller_countersigner
from marketplace.negotiation import Seller
from marketplace.strategies import SellerStrategy


class ForecastSeller(Seller):
    capability = "forecast.demand"


async def main(args: argparse.Namespace) -> None:
    identity = Identity.generate()
    seller = ForecastSeller(identity, name=f"seller-e{args.exponent}",
                            strategy=SellerStrategy(cost=args.cost, exponent=args.exponent,
                                                    latency_ms=args.latency),
                            countersign=seller_countersigner(identity))
    async with open_runtime(seller, transports=[HttpTransport()]) as runtime:
        print(json.dumps({"address": seller.address, "endpoint": runtime.endpoints[0]}),
              flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--cost", type=float, required=True)
    parser.add_argument("--exponent", type=float, required=True)
    parser.add_argument("--latency", type=float, default=400.0)
    asyncio.run(main(parser.parse_args()))
