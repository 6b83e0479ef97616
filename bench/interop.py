"""Interop speed: a uAgents agent's round trips to an AAEX agent and to another uAgents agent.

    python -m bench.interop --uagents-python .venv-uagents/bin/python [--n 300]

In the same run, one uAgents 0.26.1 agent (its own process, offline) times `n` sequential
``send_and_receive`` Ping -> Pong round trips (after a warm-up) to:

* an AAEX agent behind the uAgents gateway (this process: signature checked with
  libsecp256k1, expiry and replay rules, the reply signed), and
* another uAgents agent (its own process: python-ecdsa signing and verifying),

in uAgents' async mode (the reply is a new POST to the sender) and sync mode (the reply comes
back in the HTTP response). The AAEX agent's sync reply is signed by default; uAgents leaves
its own unsigned, and its sender verifies a signed one in pure Python, so the AAEX agent is
also measured with `sign_sync_replies=False` ("sync-unsigned"). Round trips are timed inside
the sending uAgents agent, so both targets are measured by the same clock and client. Prints
a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from typing import Any

from aaex_agents import Agent, Context, Message, handler, open_runtime
from aaex_agents.interop import (
    InteropMetrics,
    SchemaTable,
    UAgentsConfig,
    UAgentsGateway,
    UAgentsKey,
    serve_uagents,
)
from bench.stats import percentile
from tests.peers.uagents_launch import (
    UAgentsPeer,
    free_port,
    run_uagents_peer,
    uagents_address_of_seed,
)

# Schema digests of tests/peers/uagents_peer.py's Ping and Pong, computed by uagents-core.
PING_DIGEST = "model:64d85c393a306c7a194a88dd36b06bd8665dd84c9c1f078611b3ce7c614203bd"
PONG_DIGEST = "model:16222561a1092a38c50d8c8e9871711acb66518643953da53873131fbca16ca3"


class Ping(Message, type="bench.interop_ping/1"):
    text: str


class Pong(Message, type="bench.interop_pong/1"):
    text: str


class Echo(Agent):
    @handler
    async def on_ping(self, ctx: Context, msg: Ping) -> Pong:
        return Pong(text="pong: " + msg.text)


def summary(result: dict[str, Any]) -> dict[str, Any]:
    latencies = result["latencies_ms"]
    return {"n": result["n"], "ok": result["ok"],
            "pairs_per_s": round(result["ok"] / result["seconds"], 1) if result["seconds"] else 0,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    echo = Echo(name="aaex-echo")
    schemas = SchemaTable({Ping: PING_DIGEST, Pong: PONG_DIGEST})
    sender_seed, target_seed = "bench interop sender", "bench interop target"
    sender_port, target_port, aaex_port = free_port(), free_port(), free_port()
    sender = uagents_address_of_seed(sender_seed)
    target = uagents_address_of_seed(target_seed)
    peers = {sender: f"http://127.0.0.1:{sender_port}/submit"}
    metrics = InteropMetrics()
    results: dict[str, dict[str, Any]] = {}

    async def measure(peer: UAgentsPeer, key: str, to: str, sync: bool) -> None:
        print(f"... {key}: {args.n} round trips", file=sys.stderr, flush=True)
        await peer.bench(to=to, n=args.warmup, sync=sync)
        results[key] = summary(await peer.bench(to=to, n=args.n, sync=sync))

    aaex = UAgentsKey.from_identity(echo.identity).address
    print("... starting two uAgents agents", file=sys.stderr, flush=True)
    async with run_uagents_peer(args.uagents_python, seed=sender_seed, port=sender_port,
                                rules={aaex: f"http://127.0.0.1:{aaex_port}/submit",
                                       target: f"http://127.0.0.1:{target_port}/submit"}
                                ) as peer, \
            run_uagents_peer(args.uagents_python, seed=target_seed, port=target_port,
                             rules={sender: peer.endpoint}, name="uagents-target"):
        # The AAEX agent answers on one port, first signing its sync replies (the
        # default), then not (as uAgents answers); the uAgents agent answers as it does.
        for sign in (True, False):
            config = UAgentsConfig(schemas=schemas, peers=peers, sign_sync_replies=sign)
            gateway = UAgentsGateway(config, metrics=metrics)
            async with open_runtime(echo, gateways=[gateway]), \
                    serve_uagents(gateway, port=aaex_port):
                if sign:
                    for mode in ("async", "sync"):
                        await measure(peer, f"uagents_to_aaex_{mode}", aaex, mode == "sync")
                        await measure(peer, f"uagents_to_uagents_{mode}", target,
                                      mode == "sync")
                else:
                    await measure(peer, "uagents_to_aaex_sync_unsigned", aaex, True)
    rejected = {f"{p}/{r}": n for (p, r), n in metrics.rejected.items()}
    rows = [("target", "mode", "pairs/s", "p50 ms", "p99 ms", "ok")]
    for key, label, mode in (
            ("uagents_to_aaex_async", "AAEX agent", "async"),
            ("uagents_to_uagents_async", "uAgents agent", "async"),
            ("uagents_to_aaex_sync", "AAEX agent", "sync"),
            ("uagents_to_aaex_sync_unsigned", "AAEX agent", "sync-unsigned"),
            ("uagents_to_uagents_sync", "uAgents agent", "sync")):
        row = results[key]
        rows.append((label, mode, f"{row['pairs_per_s']:.1f}", f"{row['p50_ms']:.2f}",
                     f"{row['p99_ms']:.2f}", f"{row['ok']}/{row['n']}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"uAgents 0.26.1 agent -> target, {args.n} sequential Ping/Pong round trips")
    for row in rows:
        print("  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                        for i, (cell, width) in enumerate(zip(row, widths, strict=True))))
    def ratio(aaex: str, uagents: str) -> float:
        return round(results[aaex]["pairs_per_s"]
                     / max(1e-9, results[uagents]["pairs_per_s"]), 2)

    ratios = {"async": ratio("uagents_to_aaex_async", "uagents_to_uagents_async"),
              "sync": ratio("uagents_to_aaex_sync", "uagents_to_uagents_sync"),
              "sync_unsigned": ratio("uagents_to_aaex_sync_unsigned",
                                     "uagents_to_uagents_sync")}
    print(f"AAEX / uAgents pairs/s: async {ratios['async']}x, sync {ratios['sync']}x "
          f"(unsigned sync replies: {ratios['sync_unsigned']}x); envelopes the AAEX side "
          f"refused: {sum(rejected.values())}")
    return {"bench": "interop", "python": platform.python_version(), "cpus": os.cpu_count(),
            "n": args.n, **results, "aaex_over_uagents": ratios, "aaex_rejected": rejected}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uagents-python", required=True,
                        help="a Python with uagents==0.26.1 (not this one: it has libp2p)")
    parser.add_argument("--n", type=int, default=300, help="round trips per configuration")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
