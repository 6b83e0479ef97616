"""An index flood against real discovery nodes: do honest ads stay findable?

    python -m bench.abuse_dht [--nodes 5] [--honest 10] [--steps 250,750]
                              [--max-per-shard 50] [--max-total 150]

Nodes run in `python -m tests.swarm` processes on loopback. Honest sellers advertise
through the real advertiser, and one more seller withdraws after being captured. Then an
attacker mints fresh keys and sends one valid ad per key, signed to live as long as index
nodes accept, straight to every node's index; after each step of the flood the honest
sellers refresh (as their timers would) and the captured ad of the withdrawn seller is
replayed on every shard. Each row reports the share of (node, honest seller) lookups that
found the seller, whether the withdrawn seller reappeared, the ads each node holds and how
the flood was refused. Prints a table and, last, one JSON line.

The default bounds are small so that a flood of a few hundred keys fills them; pass the
production ones (``--max-per-shard 5000 --max-total 20000``) to see a flood that fits.
`index_flood` is the scenario function other benchmarks call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aaex_agents import Credits, Identity
from aaex_agents.testing import JsonLinesProcess
from discovery.index import IndexLimits
from discovery.records import PriceModel, ServiceAd, SlaOffer, shard_of

ROOT = Path(__file__).resolve().parent.parent
CAPABILITY = "bench.flooded"
SHARDS = 4


async def _worker(nodes: int, seeds: Sequence[str], limits: IndexLimits) -> JsonLinesProcess:
    args = [sys.executable, "-m", "tests.swarm", "--nodes", str(nodes),
            "--shards", str(SHARDS), "--max-per-shard", str(limits.max_per_shard),
            "--max-total", str(limits.max_total),
            "--max-per-advertiser", str(limits.max_per_advertiser)]
    for seed in seeds:
        args += ["--seed", seed]
    return await JsonLinesProcess.start(args, cwd=ROOT, timeout=300)


def _signed(identity: Identity, *, seq: int, withdrawn: bool = False) -> str:
    return ServiceAd(address=identity.address, seq=seq, expires_at=time.time() + 600,
                     capability=CAPABILITY, price=PriceModel(amount=Credits.parse(1)),
                     sla=SlaOffer(p50_ms=50, p95_ms=100, deadline_s=30, availability=0.99),
                     withdrawn=withdrawn).sign(identity).hex()


async def index_flood(*, nodes: int = 5, honest: int = 10, steps: Sequence[int] = (250, 750),
                      limits: IndexLimits | None = None) -> dict[str, Any]:
    """Flood `nodes` index nodes with `sum(steps)` fresh keys; measure after each step.

    Returns ``{"rows": [...], "honest_findable_min": ..., "withdrawn_seen_max": ...,
    "held_max": ..., ...}``; a row per step (the first, with no flood, is the baseline).
    """
    bounds = limits or IndexLimits(max_per_shard=50, max_total=150)
    first = await _worker(nodes - nodes // 2, [], bounds)
    workers = [first]
    if nodes // 2:
        workers.append(await _worker(nodes // 2, [first.ready["nodes"][0]["addr"]], bounds))
    peers = [n["peer_id"] for w in workers for n in w.ready["nodes"]]
    try:
        addresses = []
        for i in range(honest):
            worker = workers[i % len(workers)]
            published = await worker.call({"op": "publish", "capability": CAPABILITY,
                                           "node": i % len(worker.ready["nodes"])})
            addresses.append(published["address"])
        quitter = Identity.generate()
        spray = {"op": "spray", "node": 0, "capability": CAPABILITY, "peers": peers,
                 "shards": SHARDS, "only": shard_of(quitter.address, SHARDS)}
        captured = _signed(quitter, seq=1)
        await workers[-1].call({**spray, "wire": captured})
        await workers[-1].call({**spray, "wire": _signed(quitter, seq=2, withdrawn=True)})

        rows = []
        flooded = 0
        refusals: Counter[str] = Counter()
        for step in [0, *steps]:
            started = time.perf_counter()
            if step:
                answer = await first.call({"op": "flood", "node": 0, "capability": CAPABILITY,
                                           "count": step, "peers": peers, "shards": SHARDS,
                                           "ttl": bounds.max_lifetime - 60})
                refusals.update(answer["outcomes"])
            flood_s = time.perf_counter() - started
            flooded += step
            for worker in workers:
                await worker.call({"op": "republish"})
            replay = await first.call({**spray, "only": None, "wire": captured})
            revived = sum(r == ["ok"] for per_peer in replay["replies"] for r in per_peer)
            found = seen = lookups = 0
            for worker in workers:
                answer = await worker.call({"op": "lookup", "node": "all",
                                            "capability": CAPABILITY})
                for result in answer["results"]:
                    lookups += 1
                    found += len(set(addresses) & set(result["addresses"]))
                    seen += quitter.address in result["addresses"]
            held = [h for w in workers for h in (await w.call({"op": "stats"}))["held_ads"]]
            rows.append({"flood_keys": flooded, "puts": step * len(peers),
                         "puts_per_s": round(step * len(peers) / flood_s, 1) if step else None,
                         "honest_findable": found / (lookups * honest),
                         "withdrawn_seen": seen, "replay_accepted": revived,
                         "held_min": min(held), "held_mean": round(statistics.mean(held), 1),
                         "held_max": max(held), "refusals": dict(refusals)})
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
    return {"nodes": nodes, "honest": honest, "limits": vars(bounds), "rows": rows,
            "honest_findable_min": min(r["honest_findable"] for r in rows),
            "withdrawn_seen_max": max(r["withdrawn_seen"] for r in rows),
            "held_max": max(r["held_max"] for r in rows)}


def table(result: dict[str, Any]) -> str:
    limits = result["limits"]
    head = (f"{'flood keys':>10} {'puts/s':>7} {'honest found':>12} {'withdrawn':>9} "
            f"{'held min/mean/max':>18}  refusals so far")
    lines = [f"Index flood: {result['nodes']} nodes, {result['honest']} honest sellers, bounds "
             f"{limits['max_per_shard']}/shard, {limits['max_total']} total, "
             f"{limits['max_per_advertiser']}/advertiser, lifetime {limits['max_lifetime']:.0f} s",
             head, "-" * len(head)]
    for r in result["rows"]:
        rate = f"{r['puts_per_s']:>7.0f}" if r["puts_per_s"] else f"{'-':>7}"
        held = f"{r['held_min']}/{r['held_mean']:.0f}/{r['held_max']}"
        refused = ", ".join(f"{k} {v}" for k, v in sorted(r["refusals"].items())) or "-"
        lines.append(f"{r['flood_keys']:>10} {rate} {r['honest_findable']:>12.1%} "
                     f"{r['withdrawn_seen']:>9} {held:>18}  {refused}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--honest", type=int, default=10)
    parser.add_argument("--steps", default="250,750", help="fresh keys per flood step")
    parser.add_argument("--max-per-shard", type=int, default=50)
    parser.add_argument("--max-total", type=int, default=150)
    parser.add_argument("--max-per-advertiser", type=int,
                        default=IndexLimits().max_per_advertiser)
    args = parser.parse_args()
    limits = IndexLimits(max_per_shard=args.max_per_shard, max_total=args.max_total,
                         max_per_advertiser=args.max_per_advertiser)
    result = asyncio.run(index_flood(nodes=args.nodes, honest=args.honest, limits=limits,
                                     steps=[int(s) for s in args.steps.split(",") if s]))
    print(table(result))
    print(json.dumps({"bench": "abuse_dht", "python": platform.python_version(),
                      "cpus": os.cpu_count(), **result}))


if __name__ == "__main__":
    main()
