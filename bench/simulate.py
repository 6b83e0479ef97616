"""Thousands of appliances in one process, on virtual time, running the product's own code.

    python -m bench.simulate --appliances 3000 --hours 1 [--churn 0,0.3] [--out DIR]

Each appliance is a node's parts (`bench.sim_appliance`): sellers of a few capabilities,
one of which also buys, the node's market, desk, recovery pass and an in-memory SQLite
ledger that lives as long as the appliance's disk would; ads are signed and refreshed by
the product's `Advertiser` into the capability index (the product's `AdIndex`) of an
in-memory Kademlia DHT (`bench.sim_dht`). Envelopes and DHT calls cross the memory transport
with latency and loss (`bench.sim_net`). Everything runs on a `VirtualTimeLoop`: time jumps
to the next timer whenever every task waits, so an hour of timers takes the CPU time the
work between them needs.

Each scenario (one per `--churn` value, the share of appliances that leave once during the
hour and come back 5 to 20 minutes later, half of them cleanly, half by crashing) runs a
warm-up while the appliances boot and publish, the measured hours of buying on a daily
pattern (delegations per appliance and hour peak at `--rate` at 16:00 and fall to 30% of it
at 04:00), then a drain in which every appliance is online and the recovery passes settle
what churn left open, after which both parties' books of every pair that traded are compared.

Prints a table per scenario and, last, one JSON line with the figures; plots go to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import platform
import random
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aaex_agents import Context, Identity
from aaex_agents.errors import AaexError
from aaex_agents.transport.memory import MemoryNetwork
from aaex_agents.virtual_time import run_virtual, virtual_clock
from bench.sim_appliance import (
    Appliance,
    Session,
    World,
    addresses,
    delegate_once,
    offerings,
    run_appliance,
)
from bench.sim_crypto import SignatureStats, shared_signature_checks
from bench.sim_dht import KademliaConfig, Overlay
from bench.sim_net import WanRoute
from bench.sim_report import Lookup, Metrics, check_ledgers, lookup_figures, plot, trade_figures
from bench.stats import aligned
from discovery.dht import DiscoveryConfig
from marketplace.trade.delegation import Finder

SEEDS = 8
"""Appliances that are the DHT's bootstrap seeds; they never leave."""


@dataclass(frozen=True, kw_only=True)
class Scenario:
    appliances: int = 100
    hours: float = 0.1
    churn: float = 0.0
    clean_leaves: float = 0.5
    capabilities_each: int = 3
    sellers_per_capability: int = 30
    rate: float = 2.0
    """Delegations per appliance and hour at the daily peak."""
    start_hour: float = 9.0
    warmup: float = 300.0
    drain: float = 330.0
    one_way_ms: float = 20.0
    loss: float = 0.0005
    refresh_period: float = 900.0
    seed: int = 1

    @property
    def window(self) -> tuple[float, float]:
        return self.warmup, self.warmup + self.hours * 3600

    @property
    def horizon(self) -> float:
        return self.window[1] + self.drain


Tamper = Callable[[list[Appliance]], Awaitable[None]]


def daily_profile(hour: float) -> float:
    """Relative demand at `hour` of the day: 1 at 16:00, 0.3 at 04:00, smooth between."""
    return 0.3 + 0.7 * (1 - math.cos(2 * math.pi * (hour - 4) / 24)) / 2


def build(scenario: Scenario) -> tuple[list[Appliance], list[str]]:
    """The appliances, what each sells and when it is online (seeded: same every run)."""
    rng = random.Random(scenario.seed)
    n = scenario.appliances
    slots = n * scenario.capabilities_each
    count = max(scenario.capabilities_each + 2, slots // scenario.sellers_per_capability)
    catalogue = [f"sim.cap{c:04d}" for c in range(count)]
    start, end = scenario.window
    movers = set(rng.sample(range(SEEDS, n), round(scenario.churn * max(0, n - SEEDS)))) \
        if n > SEEDS else set()
    appliances = []
    for i in range(n):
        boot = 0.0 if i < SEEDS else rng.uniform(0, scenario.warmup / 5)
        if i in movers:
            leave = rng.uniform(start, end)
            back = min(leave + rng.uniform(300, 1200), end)
            sessions = [Session(boot, leave, rng.random() < scenario.clean_leaves),
                        Session(back, scenario.horizon, clean_exit=False)]
        else:
            sessions = [Session(boot, scenario.horizon, clean_exit=False)]
        sells = offerings(rng, rng.sample(catalogue, min(scenario.capabilities_each,
                                                         len(catalogue))))
        appliances.append(Appliance(i, f"sim-{i:05d}", Identity(rng.randbytes(32)), sells,
                                    sessions))
    return appliances, catalogue


async def simulate(scenario: Scenario, *, tamper: Tamper | None = None,
                   progress: Callable[[float, str], None] | None = None
                   ) -> tuple[Metrics, dict[str, Any]]:
    """Run one scenario on the running virtual-time loop; its metrics and figures."""
    with shared_signature_checks() as signatures:
        return await _simulate(scenario, tamper, progress, signatures)


async def _simulate(scenario: Scenario, tamper: Tamper | None,
                    progress: Callable[[float, str], None] | None,
                    signatures: SignatureStats) -> tuple[Metrics, dict[str, Any]]:
    clock = virtual_clock()
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    appliances, catalogue = build(scenario)
    metrics = Metrics(scenario.window)
    route = WanRoute(one_way_ms=scenario.one_way_ms, loss=scenario.loss, seed=scenario.seed)
    online: dict[str, set[str]] = {}
    start, end = scenario.window

    def went_online(app: Appliance) -> None:
        for offer in app.sells:
            online.setdefault(offer.capability, set()).add(offer.identity.address)

    def went_offline(app: Appliance) -> None:
        for offer in app.sells:
            online.get(offer.capability, set()).discard(offer.identity.address)

    def measure(app: Appliance, inner: Finder) -> Finder:
        async def find(capability: str, where: str | None) -> list[Any]:
            began = clock.elapsed
            found = list(await inner(capability, where))
            if metrics.inside(began):
                live = online.get(capability, set())
                names = set(addresses(found))
                metrics.lookups.append(Lookup(began, clock.elapsed - began,
                                              clock.elapsed > began, len(names),
                                              len(names & live), len(live)))
            return found
        return find

    async def one(ctx: Context, capability: str, rng: random.Random) -> None:
        began = clock.elapsed

        def heard(event: str, details: dict[str, Any]) -> None:
            if event == "offers" and metrics.inside(clock.elapsed):
                metrics.negotiations += 1
                for offer in details["offers"]:
                    why = offer["declined"]
                    metrics.answers["offer" if why is None else why.split(":")[0]
                                    if not why.startswith("error:") else why] += 1
            elif event == "agreement" and metrics.inside(clock.elapsed):
                metrics.agreements.append(clock.elapsed)

        try:
            outcome = await delegate_once(ctx, capability, rng, heard)
        except AaexError as exc:  # counted by type, so a failure mode shows in the figures
            outcome = f"error:{type(exc).__name__}"
        metrics.delegations[outcome] += 1
        if outcome == "met":
            metrics.delegation_s.append(clock.elapsed - began)

    async def workload(app: Appliance, ctx: Context, group: asyncio.TaskGroup) -> None:
        rng = random.Random(scenario.seed * 1_000_003 + app.index)
        mine = {o.capability for o in app.sells}
        choices = [c for c in catalogue if c not in mine] or catalogue
        peak = scenario.rate / 3600
        if clock.elapsed < start:
            await clock.sleep(start - clock.elapsed)
        while True:
            await clock.sleep(rng.expovariate(peak))
            if clock.elapsed >= end:
                return
            hour = (scenario.start_hour + clock.elapsed / 3600) % 24
            if rng.random() > daily_profile(hour):
                continue  # thinning: the rate follows the daily profile
            task = group.create_task(one(ctx, rng.choice(choices), rng))
            app.tasks.add(task)
            task.add_done_callback(app.tasks.discard)

    world = World(network=MemoryNetwork(route=route), clock=clock,
                  discovery=DiscoveryConfig(), kademlia=KademliaConfig(),
                  overlay=Overlay(route), seeds=[a.peer_id for a in appliances[:SEEDS]],
                  refresh_period=scenario.refresh_period, measure=measure,
                  workload=workload, went_online=went_online, went_offline=went_offline,
                  start=clock.now())
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        ready = [asyncio.Event() for _ in appliances]
        for app, flag in zip(appliances, ready, strict=True):
            group.create_task(run_appliance(app, world, stop, flag))
        for flag in ready:
            await flag.wait()
        gc.freeze()  # the long-lived objects of 3,000 appliances: out of the collector's way
        phases = {"boot": (time.perf_counter() - started_wall,
                           time.process_time() - started_cpu)}
        last_tick = scenario.horizon - 1.0  # the sessions all end at the horizon
        while clock.elapsed < last_tick:
            await clock.sleep(min(30.0, last_tick - clock.elapsed))
            for name, at in (("warmup", start), ("window", end)):
                if name not in phases and clock.elapsed >= at:
                    phases[name] = (time.perf_counter() - started_wall
                                    - sum(w for w, _ in phases.values()),
                                    time.process_time() - started_cpu
                                    - sum(c for _, c in phases.values()))
            if progress is not None:
                progress(clock.elapsed, f"agreements {len(metrics.agreements):,}  online "
                         f"{sum(a.online for a in appliances):,}/{len(appliances):,}")
        await clock.sleep(scenario.horizon + 1.0 - clock.elapsed)  # past the last sessions
        if tamper is not None:
            await tamper(appliances)
        ledgers = await check_ledgers(appliances)
        stop.set()
    wall, cpu = time.perf_counter() - started_wall, time.process_time() - started_cpu
    phases["drain_and_check"] = (wall - sum(w for w, _ in phases.values()),
                                 cpu - sum(c for _, c in phases.values()))
    hops = world.overlay.stats.hops
    figures = {
        "appliances": scenario.appliances, "hours": scenario.hours, "churn": scenario.churn,
        "capabilities": len(catalogue), "sellers": scenario.appliances
        * scenario.capabilities_each,
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "simulated_s": round(clock.elapsed, 1),
        "wall_s_by_phase": {k: round(w, 1) for k, (w, _) in phases.items()},
        "cpu_s_by_phase": {k: round(c, 1) for k, (_, c) in phases.items()},
        "lookup": lookup_figures(metrics), "trade": trade_figures(metrics), "ledgers": ledgers,
        "dht": {"walks": world.overlay.stats.walks, "rpcs": world.overlay.stats.rpcs,
                "rpc_failures": world.overlay.stats.rpc_failures,
                "hops_p50": sorted(hops)[len(hops) // 2] if hops else None,
                "hops_max": max(hops, default=None),
                "walks_for": dict(world.overlay.stats.purposes.most_common())},
        "network": {"frames": route.stats.frames, "lost": route.stats.lost,
                    "to_departed": route.stats.dead},
        "churned": sum(len(a.sessions) > 1 for a in appliances),
        "signature_checks": {"made": signatures.checks, "distinct": signatures.computed},
    }
    return metrics, figures


def table(name: str, f: dict[str, Any]) -> str:
    lookup, trade, books = f["lookup"], f["trade"], f["ledgers"]
    rows = [["figure", name],
            ["wall time / CPU time (s)", f"{f['wall_s']} / {f['cpu_s']}"],
            ["lookups", f"{lookup['lookups']:,}"],
            ["lookup success", f"{lookup['success']}"],
            ["lookup recall of online sellers", f"{lookup['recall']}"],
            ["lookup p50 / p95 (virtual s)", f"{lookup['latency_p50_s']} / "
                                             f"{lookup['latency_p95_s']}"],
            ["DHT hops p50 / max", f"{f['dht']['hops_p50']} / {f['dht']['hops_max']}"],
            ["negotiation success", f"{trade['negotiation_success']}"],
            ["delegation success (met)", f"{trade['delegation_success']}"],
            ["agreements / simulated s", f"{trade['agreements_per_s']}"],
            ["ledger pairs agreeing", f"{books['pairs_agreeing']:,} / {books['pairs']:,}"]]
    return aligned(rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every scenario in turn, each on a fresh virtual-time loop."""
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="aaex-simulate-"))
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=out / "simulate.log", level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threading.stack_size(512 * 1024)  # thousands of ledger and storage threads
    results: dict[str, tuple[Metrics, dict[str, Any]]] = {}
    for churn in args.churn:
        scenario = Scenario(appliances=args.appliances, hours=args.hours, churn=churn,
                            capabilities_each=args.capabilities, rate=args.rate,
                            seed=args.seed, loss=args.loss, one_way_ms=args.latency_ms)
        name = f"churn {churn:.0%}"
        results[name] = run_virtual(_with_progress(scenario, name, args.quiet),
                                    inline_executors=True)
        gc.unfreeze()
        gc.collect()
        print(table(name, results[name][1]), flush=True)
    plots = plot(results, out) if not args.no_plots else []
    if not plots and not args.no_plots:
        print("no plots: matplotlib is not installed (pip install '.[demo]')", file=sys.stderr)
    figures = {name: f for name, (_, f) in results.items()}
    summary: dict[str, Any] = {
        "bench": "simulate", "python": platform.python_version(), "cpus": os.cpu_count(),
        "appliances": args.appliances, "hours": args.hours, "scenarios": figures,
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "out": str(out), "plots": plots}
    if len(figures) > 1:
        base, *others = figures.values()
        summary["churn_effect"] = {
            f"churn {f['churn']:.0%}": {
                "lookup_success": _delta(f["lookup"]["success"], base["lookup"]["success"]),
                "lookup_p95_s": _delta(f["lookup"]["latency_p95_s"],
                                       base["lookup"]["latency_p95_s"]),
                "negotiation_success": _delta(f["trade"]["negotiation_success"],
                                              base["trade"]["negotiation_success"]),
                "delegation_success": _delta(f["trade"]["delegation_success"],
                                             base["trade"]["delegation_success"]),
                "agreements_per_s": _delta(f["trade"]["agreements_per_s"],
                                           base["trade"]["agreements_per_s"])}
            for f in others}
    print(f"plots and log in {out}", file=sys.stderr)
    return summary


def _delta(value: float | None, base: float | None) -> float | None:
    return round(value - base, 4) if value is not None and base is not None else None


async def _with_progress(scenario: Scenario, name: str,
                         quiet: bool) -> tuple[Metrics, dict[str, Any]]:
    if quiet:
        return await simulate(scenario)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f}/{task.total:,.0f} virtual s"),
               TimeElapsedColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{scenario.appliances:,} appliances, {name}",
                            total=scenario.horizon, status="booting")

        def tick(elapsed: float, status: str) -> None:
            bar.update(task, completed=elapsed, status=status)

        return await simulate(scenario, progress=tick)


def _churns(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError("--churn takes shares between 0 and 1, e.g. 0,0.3")
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appliances", type=int, default=3000)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--churn", type=_churns, default=[0.0, 0.3],
                        help="shares of appliances that leave and rejoin, one scenario each")
    parser.add_argument("--capabilities", type=int, default=3, help="capabilities per appliance")
    parser.add_argument("--rate", type=float, default=2.0,
                        help="delegations per appliance and hour at the daily peak")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="median one-way latency")
    parser.add_argument("--loss", type=float, default=0.0005, help="share of frames lost")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder for plots and the log")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.appliances < 2 or args.hours <= 0:
        parser.error("--appliances must be at least 2 and --hours positive")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
