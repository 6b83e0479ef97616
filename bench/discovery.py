"""Discovery at N = 10, 25, 50, 100 nodes spread over processes, and the libp2p envelope
round trip next to HTTP's.

    python -m bench.discovery [--sizes 10,25,50,100] [--lookups 30] [--sellers 25]

For each N: bootstrap time, lookup success (every published seller found), lookup latency
p50/p95/p99 and messages per lookup (Kademlia walks + index calls). Then two nodes in two
processes exchange envelopes through the DHT directory over libp2p and over HTTP. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from aaex_agents.testing import JsonLinesProcess
from bench.messaging import DEFAULT_UAGENTS_SCRIPT, run_uagents
from bench.stats import percentile

ROOT = Path(__file__).resolve().parent.parent
CAPABILITY = "bench.forecast"


async def start_worker(nodes: int, seeds: list[str]) -> JsonLinesProcess:
    """One `python -m tests.swarm` process hosting `nodes` nodes."""
    args = [sys.executable, "-m", "tests.swarm", "--nodes", str(nodes)]
    for seed in seeds:
        args += ["--seed", seed]
    return await JsonLinesProcess.start(args, cwd=ROOT, timeout=600)


async def call(worker: JsonLinesProcess, command: dict[str, Any]) -> dict[str, Any]:
    """One command to a worker; its error (a timeout under load, say) ends the run, named."""
    result = await worker.call(command)
    if "error" in result:
        raise RuntimeError(f"{command['op']} failed in a worker: {result['error']}")
    return result


async def one_size(n: int, processes: int, sellers: int, lookups: int,
                   rng: random.Random) -> dict[str, Any]:
    per = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
    started = time.perf_counter()
    first = await start_worker(per[0], [])
    seed = first.ready["nodes"][0]["addr"]
    workers = [first]
    for count in per[1:]:  # one process joins at a time; inside it, 3 nodes at a time
        workers.append(await start_worker(count, [seed]))
    bootstrap_s = time.perf_counter() - started
    try:
        stats = await asyncio.gather(*(call(w, {"op": "stats"}) for w in workers))
        tables = [t for answer in stats for t in answer["routing_tables"]]
        published = []
        acks = []
        for _ in range(sellers):
            worker = rng.choice(workers)
            result = await call(worker, {"op": "publish",
                                         "node": rng.randrange(len(worker.ready["nodes"])),
                                         "capability": CAPABILITY,
                                         "price": round(rng.uniform(1, 9), 2)})
            published.append(result["address"])
            acks.append(result["acks"])
        expected = sorted(published)
        latencies, messages, walks, successes = [], [], [], 0
        for _ in range(lookups):
            worker = rng.choice(workers)
            result = (await call(worker, {"op": "lookup",
                                          "node": rng.randrange(len(worker.ready["nodes"])),
                                          "capability": CAPABILITY}))["results"][0]
            latencies.append(result["ms"])
            messages.append(result["messages"])
            walks.append(result["walks_and_index_calls"])
            successes += result["addresses"] == expected
    finally:
        await asyncio.gather(*(w.stop() for w in workers))
    return {
        "nodes": n, "processes": processes, "bootstrap_s": round(bootstrap_s, 2),
        "routing_table_p50": statistics.median(tables), "routing_table_min": min(tables),
        "sellers": sellers, "min_acks": min(acks), "lookups": lookups,
        "success": successes / lookups, "lookup_p50_ms": round(percentile(latencies, 50), 1),
        "lookup_p95_ms": round(percentile(latencies, 95), 1),
        "lookup_p99_ms": round(percentile(latencies, 99), 1),
        "messages_per_lookup": round(statistics.mean(messages), 1),
        "walks_and_index_calls_per_lookup": round(statistics.mean(walks), 1),
    }


async def envelope_pair(count: int, concurrency: int) -> dict[str, float]:
    first = await start_worker(1, [])
    second = await start_worker(1, [first.ready["nodes"][0]["addr"]])
    try:
        echo = await first.call({"op": "host_echo", "node": 0})
        figures: dict[str, float] = {}
        for transport in ("libp2p", "http"):
            ask = {"op": "ask_echo", "node": 0, "address": echo["address"], "count": count,
                   "transport": transport}
            sequential = await second.call(ask)
            loaded = await second.call({**ask, "concurrency": concurrency})
            figures[f"{transport}_p50_ms"] = round(percentile(sequential["ms"], 50), 3)
            figures[f"{transport}_p99_ms"] = round(percentile(sequential["ms"], 99), 3)
            figures[f"{transport}_seq_pairs_per_s"] = round(sequential["pairs_per_s"], 1)
            figures[f"{transport}_pairs_per_s"] = round(loaded["pairs_per_s"], 1)
        return figures
    finally:
        await asyncio.gather(first.stop(), second.stop())


def table(rows: list[dict[str, Any]], pair: dict[str, float], concurrency: int) -> str:
    head = (f"{'N':>4} {'procs':>5} {'boot s':>7} {'rt p50':>6} {'rt min':>6} {'acks':>4} "
            f"{'success':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'RPCs':>5}")
    lines = ["Discovery (each lookup must return every published seller)", head,
             "-" * len(head)]
    for r in rows:
        lines.append(f"{r['nodes']:>4} {r['processes']:>5} {r['bootstrap_s']:>7.1f} "
                     f"{r['routing_table_p50']:>6.0f} {r['routing_table_min']:>6} "
                     f"{r['min_acks']:>4} {r['success']:>8.1%} {r['lookup_p50_ms']:>8.1f} "
                     f"{r['lookup_p95_ms']:>8.1f} {r['lookup_p99_ms']:>8.1f} "
                     f"{r['messages_per_lookup']:>5.1f}")
    lines += ["", f"Envelope round trip between two processes, resolved through the DHT "
              f"({concurrency} in flight for pairs/s)",
              f"{'transport':>10} {'p50 ms':>8} {'p99 ms':>8} {'seq /s':>8} {'pairs/s':>8}"]
    for transport in ("libp2p", "http"):
        lines.append(f"{transport:>10} {pair[transport + '_p50_ms']:>8.2f} "
                     f"{pair[transport + '_p99_ms']:>8.2f} "
                     f"{pair[transport + '_seq_pairs_per_s']:>8.0f} "
                     f"{pair[transport + '_pairs_per_s']:>8.0f}")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        processes = max(2, min(args.max_processes, n // 25 + (n % 25 > 0)))
        print(f"... N={n} over {processes} processes", file=sys.stderr, flush=True)
        rows.append(await one_size(n, processes, args.sellers, args.lookups, rng))
    print("... envelope round trips", file=sys.stderr, flush=True)
    pair = await envelope_pair(args.pairs, args.concurrency)
    print(table(rows, pair, args.concurrency))
    summary: dict[str, Any] = {"bench": "discovery", "python": platform.python_version(),
                               "cpus": os.cpu_count(), "sizes": rows, **pair}
    if args.uagents_python:
        print("... uAgents baseline (two processes over HTTP, same machine)", file=sys.stderr,
              flush=True)
        script = args.uagents_script or ROOT / DEFAULT_UAGENTS_SCRIPT
        sizes = argparse.Namespace(n_seq=200, n_tput=args.pairs * 2, concurrency=100,
                                   warmup=50, payload_bytes=64)
        theirs = await asyncio.to_thread(run_uagents, args.uagents_python, Path(script), sizes)
        if "pairs_per_s" in theirs:
            ratio = pair["libp2p_pairs_per_s"] / float(theirs["pairs_per_s"])  # type: ignore[arg-type]
            summary.update(uagents_pairs_per_s=theirs["pairs_per_s"],
                           uagents_p50_ms=theirs["p50_ms"],
                           libp2p_vs_uagents_pairs_per_s_x=round(ratio, 2))
            print(f"uAgents 0.26.1 over HTTP: {float(theirs['pairs_per_s']):.0f} pairs/s "  # type: ignore[arg-type]
                  f"(100 in flight); libp2p here: {ratio:.1f}x that")
        else:
            summary["uagents_error"] = theirs.get("error")
    for r in rows:
        summary[f"success_n{r['nodes']}"] = r["success"]
        summary[f"lookup_p50_ms_n{r['nodes']}"] = r["lookup_p50_ms"]
        summary[f"lookup_p95_ms_n{r['nodes']}"] = r["lookup_p95_ms"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,25,50,100")
    parser.add_argument("--sellers", type=int, default=25, help="more than 20: past the "
                        "provider-record limit of py-libp2p")
    parser.add_argument("--lookups", type=int, default=30)
    parser.add_argument("--max-processes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--uagents-python", help="python of a venv with uagents==0.26.1: "
                        "run its baseline in the same invocation and report the ratio")
    parser.add_argument("--uagents-script", help=f"default: {DEFAULT_UAGENTS_SCRIPT} from the "
                        "repository root")
    args = parser.parse_args()
    summary = asyncio.run(run(args))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
