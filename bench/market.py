"""Negotiation speed: CFP to signed agreement with 1, 5 and 20 sellers, and 1,000 concurrent
negotiations across 10 nodes.

    python -m bench.market [--rounds 30] [--concurrent 1000] [--nodes 10]

Sellers run in worker processes (HTTP on 127.0.0.1; each node is one runtime with its own
endpoint). Latency is also given in network round-trip times (RTT = the p50 of a plain
signed request/response between the same processes). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from aaex_agents import (
    Agent,
    Context,
    Credits,
    HttpTransport,
    Identity,
    Message,
    StaticDirectory,
    handler,
    open_runtime,
)
from aaex_agents.testing import JsonLinesProcess
from aaex_agents.transport.listener import ServerLimits
from bench.stats import percentile
from marketplace.trade.contracting import buyer_signer, seller_countersigner
from marketplace.trade.negotiation import CallForProposals, Seller, negotiate, new_dialogue_id
from marketplace.trade.strategies import (
    BOULWARE,
    CONCEDER,
    LINEAR,
    BuyerStrategy,
    BuyerUtility,
    SellerStrategy,
)

ROOT = Path(__file__).resolve().parent.parent
CAPABILITY = "bench.forecast"
UTILITY = BuyerUtility(max_price=Credits.parse(10), max_latency_ms=1000, max_deadline_s=300)

ONE_ADDRESS = ServerLimits(max_connections_per_ip=ServerLimits().max_connections)
"""Every node of this benchmark is on 127.0.0.1, so the per-address connection limit would be
the limit of all ten nodes together: 1,000 negotiations in flight pool more than its 128
connections to one seller node, and the extra ones were refused with 503 (290 of 1,000
negotiations lost). The benchmark measures negotiation, so one address may use them all."""


class Ping(Message, type="bench.market_ping/1"):
    n: int


class BenchTask(BaseModel):
    n: float


class BenchSeller(Seller):
    capability = CAPABILITY
    task_model: ClassVar[type[BaseModel]] = BenchTask

    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Ping:
        return msg


class BenchBuyer(Agent):
    pass


def make_seller(index: int) -> BenchSeller:
    identity = Identity.generate()
    exponent = (BOULWARE, LINEAR, CONCEDER)[index % 3]
    cost = Credits.parse(1) + Credits(index % 7 * 500_000)
    return BenchSeller(identity, strategy=SellerStrategy(cost=cost,
                                                         exponent=exponent, latency_ms=300),
                       countersign=seller_countersigner(identity))



def call(seconds: float) -> CallForProposals:
    return CallForProposals(dialogue=new_dialogue_id(), capability=CAPABILITY,
                            task={"n": random.random()},
                            max_price=Credits.parse(10), max_latency_ms=1000, max_deadline_s=300,
                            respond_by=time.time() + seconds)


# -- worker process ----------------------------------------------------------------------
async def worker(nodes: int, sellers: int, buyers: bool) -> None:
    """Host `nodes` runtimes of `sellers` sellers (and a buyer); obey stdin commands."""
    async with AsyncExitStack() as stack:
        hosted = []
        directory = StaticDirectory()
        for n in range(nodes):
            agents: list[Agent] = [make_seller(n * sellers + i) for i in range(sellers)]
            buyer = BenchBuyer() if buyers else None
            if buyer is not None:
                agents.append(buyer)
            runtime = await stack.enter_async_context(open_runtime(
                agents, transports=[HttpTransport(limits=ONE_ADDRESS)], directory=directory))
            hosted.append((runtime, buyer, agents[:sellers]))
        print(json.dumps({"nodes": [{"endpoint": r.endpoints[0], "buyer": b.address if b else None,
                                     "sellers": [s.address for s in ss]}
                                    for r, b, ss in hosted]}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command["op"] == "quit":
                break
            for address, endpoints in command["directory"].items():
                directory.add(address, *endpoints)
            outcomes = await asyncio.gather(*(
                run_load(runtime, buyer, command) for runtime, buyer, _ in hosted
                if buyer is not None))
            merged: dict[str, Any] = {"ms": [], "completed": 0, "lost": 0, "errors": []}
            for outcome in outcomes:
                merged["ms"] += outcome["ms"]
                merged["completed"] += outcome["completed"]
                merged["lost"] += outcome["lost"]
                merged["errors"] += outcome["errors"][:5]
            print(json.dumps(merged), flush=True)


async def run_load(runtime: Any, buyer: BenchBuyer, command: dict[str, Any]) -> dict[str, Any]:
    """`per_node` concurrent negotiations, each with `k` random sellers of other nodes."""
    sellers = command["sellers"]
    ctx = runtime.context(buyer)
    sign = buyer_signer(buyer.identity)
    rng = random.Random(buyer.address)
    times: list[float] = []
    errors: list[str] = []

    async def one() -> bool:
        started = time.perf_counter()
        try:
            result = await negotiate(ctx, rng.sample(sellers, command["k"]),
                                     call(command["window"]), utility=UTILITY,
                                     strategy=BuyerStrategy(exponent=CONCEDER, reserve=0.05),
                                     sign=sign, timeout=command["window"])
        except Exception as exc:  # noqa: BLE001 - a lost negotiation is counted, not raised
            errors.append(repr(exc)[:200])
            return False
        times.append((time.perf_counter() - started) * 1000)
        if result.agreement is None:
            errors.append(str([b.declined for b in result.bids])[:200])
        return result.agreement is not None

    done = await asyncio.gather(*(one() for _ in range(command["per_node"])))
    return {"ms": times, "completed": sum(done), "lost": len(done) - sum(done),
            "errors": errors}


# -- driver ------------------------------------------------------------------------------
async def start_worker(nodes: int, sellers: int, buyers: bool) -> JsonLinesProcess:
    """A worker process hosting `nodes` nodes of `sellers` sellers (and a buyer each)."""
    args = [sys.executable, "-m", "bench.market", "--role", "worker", "--worker-nodes",
            str(nodes), "--worker-sellers", str(sellers)]
    if buyers:
        args.append("--worker-buyers")
    return await JsonLinesProcess.start(args, cwd=ROOT)


async def latency_by_sellers(rounds: int) -> dict[str, Any]:
    """CFP -> signed agreement with 1, 5 and 20 sellers in another process."""
    seller_worker = await start_worker(1, 20, buyers=False)
    try:
        node = seller_worker.ready["nodes"][0]
        directory = StaticDirectory({a: [node["endpoint"]] for a in node["sellers"]})
        buyer = BenchBuyer()
        figures: dict[str, Any] = {}
        async with open_runtime(buyer, transports=[HttpTransport(limits=ONE_ADDRESS)],
                                directory=directory) as runtime:
            ctx = runtime.context(buyer)
            rtts = []
            for n in range(200):
                started = time.perf_counter()
                await ctx.ask(node["sellers"][0], Ping(n=n), timeout=5)
                rtts.append((time.perf_counter() - started) * 1000)
            rtt = percentile(rtts[20:], 50)
            figures["rtt_p50_ms"] = round(rtt, 3)
            sign = buyer_signer(buyer.identity)
            for k in (1, 5, 20):
                times, trips, agreed = [], [], 0
                for _ in range(rounds):
                    started = time.perf_counter()
                    result = await negotiate(ctx, node["sellers"][:k], call(10), utility=UTILITY,
                                             strategy=BuyerStrategy(exponent=LINEAR),
                                             sign=sign, max_rounds=3)
                    times.append((time.perf_counter() - started) * 1000)
                    trips.append(result.round_trips)
                    agreed += result.agreement is not None
                figures[f"sellers_{k}"] = {
                    "p50_ms": round(percentile(times, 50), 2),
                    "p99_ms": round(percentile(times, 99), 2),
                    "p50_in_rtt": round(percentile(times, 50) / rtt, 1),
                    "protocol_round_trips_p50": percentile([float(t) for t in trips], 50),
                    "agreed": agreed, "rounds": rounds}
        return figures
    finally:
        await seller_worker.stop()


async def concurrent_load(total: int, nodes: int, k: int, window: float) -> dict[str, Any]:
    """`total` concurrent negotiations started by the buyers of `nodes` nodes."""
    per_process = 2
    workers = await asyncio.gather(*(start_worker(per_process, 2, buyers=True)
                                     for _ in range(nodes // per_process)))
    try:
        all_nodes = [n for w in workers for n in w.ready["nodes"]]
        sellers = [s for n in all_nodes for s in n["sellers"]]
        directory = {s: [n["endpoint"]] for n in all_nodes for s in n["sellers"]}
        per_node = total // len(all_nodes)
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(w.call({
            "op": "run", "directory": directory, "sellers": sellers, "k": k,
            "per_node": per_node, "window": window}) for w in workers))
        wall = time.perf_counter() - started
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
    times = [t for o in outcomes for t in o["ms"]]
    completed = sum(o["completed"] for o in outcomes)
    lost = sum(o["lost"] for o in outcomes)
    return {"negotiations": per_node * len(all_nodes), "nodes": len(all_nodes),
            "completed": completed, "lost": lost, "p50_ms": round(percentile(times, 50), 1),
            "p99_ms": round(percentile(times, 99), 1), "wall_s": round(wall, 2),
            "per_s": round(completed / wall, 1),
            "errors": [e for o in outcomes for e in o["errors"]][:5]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    print("... CFP to agreement with 1, 5, 20 sellers", file=sys.stderr, flush=True)
    latency = await latency_by_sellers(args.rounds)
    print(f"... {args.concurrent} concurrent negotiations across {args.nodes} nodes",
          file=sys.stderr, flush=True)
    load = await concurrent_load(args.concurrent, args.nodes, args.k, args.window)
    lines = [f"CFP -> signed agreement (RTT p50 {latency['rtt_p50_ms']:.2f} ms, HTTP, "
             "two processes)",
             f"{'sellers':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 RTTs':>9} {'round trips':>12}"]
    for k in (1, 5, 20):
        row = latency[f"sellers_{k}"]
        lines.append(f"{k:>8} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                     f"{row['p50_in_rtt']:>9.1f} {row['protocol_round_trips_p50']:>12.0f}")
    lines += ["", f"{load['negotiations']} concurrent negotiations across {load['nodes']} nodes "
              f"({args.k} sellers each)",
              f"  completed {load['completed']}, lost {load['lost']}, p50 {load['p50_ms']} ms, "
              f"p99 {load['p99_ms']} ms, {load['per_s']} agreements/s"]
    print("\n".join(lines))
    return {"bench": "market", "python": platform.python_version(), "cpus": os.cpu_count(),
            **{k: v for k, v in latency.items()},
            "agreement_20_sellers_in_rtt": latency["sellers_20"]["p50_in_rtt"],
            "concurrent": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=["driver", "worker"], default="driver")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--k", type=int, default=3, help="sellers per concurrent negotiation")
    parser.add_argument("--window", type=float, default=120.0,
                        help="negotiation deadline of each concurrent negotiation, seconds")
    parser.add_argument("--worker-nodes", type=int, default=1)
    parser.add_argument("--worker-sellers", type=int, default=2)
    parser.add_argument("--worker-buyers", action="store_true")
    args = parser.parse_args()
    if args.role == "worker":
        asyncio.run(worker(args.worker_nodes, args.worker_sellers, args.worker_buyers))
        return
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
