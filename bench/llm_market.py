"""What buying a completion on the market costs over calling the same model locally.

Run through ``python -m bench.llm`` (or ``--market-only``). Two real nodes in this process,
on loopback libp2p with a DHT, each with its own SQLite ledger: the seller hosts
`LlmSeller` on the shipped SmolLM2; the buyer serves the OpenAI-compatible gateway. Measured:

* **overhead**: one completion (greedy, a fixed ``max_tokens``) called on the seller's model
  directly vs bought through the buyer's market (discovery, negotiation, escrow, signed
  delivery, receipt, settlement on both books); median wall ms of ``--runs`` each, the
  difference in ms and in % of the direct call;
* **gateway tokens/s**: N concurrent clients POSTing ``/v1/chat/completions`` vs N workers
  calling the model directly, N = 1 and 8; generated tokens per second of wall time.

Both nodes share this machine's cores with the model, so the figures are an upper bound on
the protocol's cost (a real deployment runs the buyer elsewhere).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents import Credits
from aaex_agents.llm import Request, user
from marketplace.node.config import parse_config
from marketplace.node.node import Node, open_node

CLIENTS = (1, 8)
PROMPT = "Describe a lighthouse in one sentence."


def _seller(base: Path) -> dict[str, Any]:
    return {"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0",
                     "p2p": ["/ip4/127.0.0.1/tcp/0"], "data_dir": str(base / "seller"),
                     "identity": str(base / "seller.key"), "drain_timeout": 1},
            "llm": {"backend": "llamacpp", "n_ctx": 512},
            "agents": [{"name": "llm", "class": "marketplace:LlmSeller",
                        "settings": {"price_in_per_1k": 0.001, "price_out_per_1k": 0.002,
                                     "max_tokens_cap": 256}}]}


def _buyer(base: Path, seed: str) -> dict[str, Any]:
    return {"node": {"http": "127.0.0.1:0", "admin": "127.0.0.1:0",
                     "p2p": ["/ip4/127.0.0.1/tcp/0"], "seeds": [seed],
                     "data_dir": str(base / "buyer"), "identity": str(base / "buyer.key"),
                     "drain_timeout": 1},
            "market": {"budget": 10_000, "per_seller": 10_000},
            "gateway": {"listen": "127.0.0.1:0", "agent": "shopper", "budget": 1},
            "agents": [{"name": "shopper", "class": "marketplace:Buyer"}]}


async def _direct(seller: Node, max_tokens: int) -> tuple[float, int]:
    if seller.llm is None:
        raise RuntimeError("the seller node has no model")
    handle = seller.llm.for_agent("bench.direct")
    started = time.perf_counter()
    completion = await handle.generate(Request(messages=(user(PROMPT),), max_tokens=max_tokens))
    return time.perf_counter() - started, completion.usage.completion_tokens


async def _bought(buyer: Node, max_tokens: int) -> tuple[float, int]:
    if buyer.market is None:
        raise RuntimeError("the buyer node has no market")
    agent = next(iter(buyer.runtime.agents.values()))
    task = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens}
    started = time.perf_counter()
    done = await buyer.market.for_agent(agent.address).delegate(
        buyer.runtime.context(agent), "llm.chat", task, budget=Credits.parse(1), deadline=60)
    return time.perf_counter() - started, int(done.result["usage"]["output_tokens"])


async def _gateway_call(http: aiohttp.ClientSession, url: str, token: str,
                        max_tokens: int) -> int:
    body = {"model": "aaex:any", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": PROMPT}]}
    async with http.post(url + "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {token}"}) as response:
        answer = await response.json()
        if response.status != 200:
            raise RuntimeError(f"gateway answered {response.status}: {answer}")
        return int(answer["usage"]["completion_tokens"])


async def _throughput(clients: int, requests: int, call: Any) -> float:
    """Tokens per second of wall time for `requests` calls spread over `clients` workers."""
    tokens = 0

    async def worker(share: int) -> None:
        nonlocal tokens
        for _ in range(share):
            generated = await call()
            tokens += generated

    shares = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for share in shares:
            tg.create_task(worker(share))
    return tokens / (time.perf_counter() - started)


async def bench_market(*, runs: int, max_tokens: int, requests: int) -> dict[str, Any]:
    """Run both comparisons; returns the figures (printed as they come)."""
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        async with open_node(parse_config(_seller(base), base=base)) as seller:
            seed = seller.host.addrs[0] if seller.host else ""
            async with open_node(parse_config(_buyer(base, seed), base=base)) as buyer:
                agent = next(iter(buyer.runtime.agents.values()))
                await buyer.ledger.deposit(agent.address, 1_000 * 1_000_000)
                await _bought(buyer, max_tokens)  # warm-up: discovery cache, first calls
                await _direct(seller, max_tokens)
                direct_s, bought_s = [], []
                for _ in range(runs):
                    direct_s.append((await _direct(seller, max_tokens))[0])
                    bought_s.append((await _bought(buyer, max_tokens))[0])
                d_ms = statistics.median(direct_s) * 1000
                b_ms = statistics.median(bought_s) * 1000
                figures: dict[str, Any] = {
                    "max_tokens": max_tokens, "runs": runs,
                    "direct_ms": round(d_ms, 1), "market_ms": round(b_ms, 1),
                    "overhead_ms": round(b_ms - d_ms, 1),
                    "overhead_pct": round((b_ms - d_ms) / d_ms * 100, 1), "clients": {}}
                print(f"  market: direct {d_ms:.0f} ms, bought {b_ms:.0f} ms, overhead "
                      f"{b_ms - d_ms:.0f} ms ({figures['overhead_pct']}%)", flush=True)
                token = (buyer.config.node.data_dir / "admin.token").read_text().strip()
                if buyer.gateway_url is None:
                    raise RuntimeError("the buyer node serves no gateway")
                async with aiohttp.ClientSession() as http:
                    for clients in CLIENTS:
                        direct_tps = await _throughput(
                            clients, requests,
                            lambda: _direct_tokens(seller, max_tokens))
                        gateway_tps = await _throughput(
                            clients, requests,
                            lambda: _gateway_call(http, str(buyer.gateway_url), token,
                                                  max_tokens))
                        figures["clients"][str(clients)] = {
                            "direct_tokens_per_s": round(direct_tps, 1),
                            "gateway_tokens_per_s": round(gateway_tps, 1),
                            "ratio": round(gateway_tps / direct_tps, 3)}
                        print(f"  gateway: {clients} client(s): direct {direct_tps:.1f} "
                              f"tok/s, gateway {gateway_tps:.1f} tok/s", flush=True)
    return figures


async def _direct_tokens(seller: Node, max_tokens: int) -> int:
    return (await _direct(seller, max_tokens))[1]


def table(figures: dict[str, Any]) -> str:
    """The market figures as a markdown table."""
    lines = ["| measure | direct | market / gateway | overhead |", "|---|---:|---:|---:|",
             f"| one completion ({figures['max_tokens']} tokens), ms | {figures['direct_ms']} "
             f"| {figures['market_ms']} | {figures['overhead_ms']} ms "
             f"({figures['overhead_pct']}%) |"]
    for clients, row in figures["clients"].items():
        lines.append(f"| {clients} client(s), tokens/s | {row['direct_tokens_per_s']} | "
                     f"{row['gateway_tokens_per_s']} | ratio {row['ratio']} |")
    return "\n".join(lines)
