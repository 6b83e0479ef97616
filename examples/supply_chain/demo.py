"""`aaex demo supply-chain`: a replenishment job bought on a live market of five nodes.

The planner's node (planner + warehouse) runs in this process; four provider nodes run as
`aaex node run` child processes, each with its own key, ledger, LLM and one provider agent:
two forecasters and two routers with different costs, SLAs and concession strategies. All
five meet in the libp2p DHT through the planner's node, find each other by capability and
trade with signed envelopes. The first forecaster that starts a task is killed with SIGKILL
mid-task, so the planner has to reroute its subtasks; its bond pays for that.

What comes out, in the output folder: the node configurations, each node's log, the
planner's ledger, ``report.json``, ``forecast.png`` and ``routes.png``; on the terminal a
summary. `run_demo` returns the report, which tests check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from aaex_agents.errors import AaexError
from discovery.query import Query
from marketplace.contracts.agreement import MINOR_UNITS
from marketplace.contracts.errors import LedgerTampered
from marketplace.contracts.ledger import Ledger
from marketplace.node.config import load_config
from marketplace.node.node import Node, open_node
from marketplace.trade.delegation import Delegated
from marketplace.trade.strategies import BOULWARE, CONCEDER, LINEAR

from . import data
from .agents import FORECAST, ROUTING, Planner, PlanOutcome, Warehouse

AGENTS = "aaex_examples.supply_chain.agents"


@dataclass(frozen=True)
class ProviderSpec:
    """One provider node of the demo."""

    name: str
    agent_class: str
    cost: float
    exponent: float
    latency_ms: float
    deadline_s: float = 240.0


PROVIDERS = (
    ProviderSpec("forecast-thrifty", "ForecastProvider", cost=1.0, exponent=BOULWARE,
                 latency_ms=50_000),
    ProviderSpec("forecast-express", "ForecastProvider", cost=2.0, exponent=CONCEDER,
                 latency_ms=30_000),
    ProviderSpec("route-thrifty", "RoutingProvider", cost=1.5, exponent=BOULWARE,
                 latency_ms=40_000),
    ProviderSpec("route-express", "RoutingProvider", cost=2.5, exponent=LINEAR,
                 latency_ms=25_000),
)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """How big a demo to run, and where to put what it makes.

    Attributes:
        out: output folder (emptied of a previous run's files first).
        stores: stores to supply; groups: forecast subtasks; zones: routing subtasks.
        trucks, capacity: the fleet; capacity None sizes trucks from recent sales.
        llm: "llamacpp" (the CPU model on every node) or "none".
        kill: kill the first forecaster that starts a task.
        startup_timeout: seconds each provider node may take to start.
    """

    out: Path = Path("supply-chain-demo")
    stores: int = 20
    groups: int = 4
    zones: int = 2
    trucks: int = 3
    capacity: int | None = None
    safety_stock_pct: int = 10
    llm: str = "llamacpp"
    kill: bool = True
    startup_timeout: float = 180.0
    seed: int = 7


Step = Callable[[str], None]
DEMO_STEPS = 8
"""Calls of `step` in a run that completes (a progress bar's total)."""


def _toml(document: dict[str, Any]) -> str:
    """A small TOML writer for the configs this demo writes (tables, arrays of tables)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")
    lines: list[str] = []
    for section, body in document.items():
        for table in body if isinstance(body, list) else [body]:
            lines.append(f"[[{section}]]" if isinstance(body, list) else f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
            lines.append("")
    return "\n".join(lines)


def node_document(name: str, agents: list[dict[str, Any]], *, seeds: list[str], llm: str,
                  market: dict[str, Any] | None = None) -> dict[str, Any]:
    """The TOML document of one demo node."""
    document: dict[str, Any] = {
        "node": {"identity": f"{name}.key", "data_dir": f"{name}-data", "http": "127.0.0.1:0",
                 "admin": "127.0.0.1:0", "p2p": ["/ip4/127.0.0.1/tcp/0"], "seeds": seeds,
                 "refresh_period": 60.0, "drain_timeout": 5.0},
        "llm": {"backend": llm, **({"n_threads": 1} if llm == "llamacpp" else {})},
        "agents": agents}
    if market:
        document["market"] = market
    return document


@dataclass
class ProviderNode:
    """A provider node running as a child process."""

    spec: ProviderSpec
    process: asyncio.subprocess.Process
    log: Path
    status: dict[str, Any] = field(default_factory=dict)
    address: str = ""
    killed_at: float | None = None
    pump: asyncio.Task[None] | None = None

    async def stop(self) -> None:
        """SIGTERM, then wait (the node withdraws its ads and drains); SIGKILL if stuck."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.pump is not None:
            await asyncio.gather(self.pump, return_exceptions=True)


def _pipe(stream: asyncio.StreamReader | None) -> asyncio.StreamReader:
    if stream is None:  # the child was started without this pipe: a bug here, not bad input
        raise AaexError("a provider node's output is not piped to the demo")
    return stream


async def _pump(node: ProviderNode, on_event: Callable[[ProviderNode, dict[str, Any]], None]
                ) -> None:
    """Copy the child's JSON log lines to its log file, reporting structured events."""
    with node.log.open("ab") as sink:
        async for line in _pipe(node.process.stderr):
            sink.write(line)
            sink.flush()
            if b'"event"' in line:
                with contextlib.suppress(ValueError):
                    on_event(node, json.loads(line))


async def _start_provider(spec: ProviderSpec, folder: Path, seeds: list[str], llm: str,
                          timeout: float) -> ProviderNode:
    config = folder / f"{spec.name}.toml"
    config.write_text(_toml(node_document(spec.name, [{
        "name": spec.name, "class": f"{AGENTS}:{spec.agent_class}",
        "settings": {"cost": spec.cost, "exponent": spec.exponent,
                     "latency_ms": spec.latency_ms, "deadline_s": spec.deadline_s}}],
        seeds=seeds, llm=llm)))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.cli", "--log-format", "json", "node", "run",
        "--config", str(config), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return ProviderNode(spec, process, folder / f"{spec.name}.log")


async def _await_ready(node: ProviderNode, timeout: float) -> None:
    try:
        line = await asyncio.wait_for(_pipe(node.process.stdout).readline(), timeout)
    except TimeoutError:
        raise AaexError(f"{node.spec.name} did not start within {timeout:.0f} s; "
                        f"see {node.log}") from None
    if not line:
        await node.process.wait()
        raise AaexError(f"{node.spec.name} exited ({node.process.returncode}) while starting;"
                        f" see {node.log}")
    node.status = json.loads(line)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session, \
            session.get(node.status["admin"].rstrip("/") + "/agents") as response:
        agents = await response.json()
    node.address = agents[0]["address"]


@asynccontextmanager
async def _providers(folder: Path, seeds: list[str], options: DemoOptions,
                     on_event: Callable[[ProviderNode, dict[str, Any]], None]
                     ) -> AsyncIterator[list[ProviderNode]]:
    nodes: list[ProviderNode] = []
    try:
        for spec in PROVIDERS:
            node = await _start_provider(spec, folder, seeds, options.llm,
                                         options.startup_timeout)
            node.pump = asyncio.create_task(_pump(node, on_event))
            nodes.append(node)
        await asyncio.gather(*(_await_ready(n, options.startup_timeout) for n in nodes))
        yield nodes
    finally:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)


async def _await_market(node: Node, want: dict[str, int], timeout: float) -> None:
    """Wait until discovery finds `want[capability]` sellers of each capability."""
    if node.discovery is None:
        raise AaexError("the planner's node runs no discovery: give it node.p2p addresses")
    deadline = time.monotonic() + timeout
    while True:
        node.discovery.clear_cache()
        found = {c: len(await node.discovery.lookup(Query(c))) for c in want}
        if all(found[c] >= n for c, n in want.items()):
            return
        if time.monotonic() > deadline:
            raise AaexError(f"the market did not form within {timeout:.0f} s: found {found}, "
                            f"wanted {want}")
        await asyncio.sleep(0.5)


def default_capacity(options: DemoOptions) -> int:
    """Truck capacity that fits a week of recent sales plus safety stock with some slack."""
    network = data.generate(data.SyntheticConfig(stores=options.stores, seed=options.seed))
    week = sum(sum(series[-7:]) for series in network.demand.values())
    need = week * (1 + options.safety_stock_pct / 100) * 1.3 / options.trucks
    return int(math.ceil(need / 100) * 100)


def request_text(options: DemoOptions, capacity: int) -> str:
    """The planner's job, as an operator would type it."""
    return (f"Plan next week's replenishment for {options.stores} stores from one depot with "
            f"{options.trucks} trucks of {capacity:,} units each, keeping "
            f"{options.safety_stock_pct}% safety stock.")


async def run_demo(options: DemoOptions, step: Step | None = None,
                   note: Step | None = None) -> dict[str, Any]:
    """Run the whole demo and write its files; returns the report (also in report.json).

    `step` is told each stage as it begins (`DEMO_STEPS` of them), `note` what happens
    between (the kill).

    Raises:
        AaexError: a node did not start, or the market did not form in time.
    """
    say = step or (lambda text: None)
    tell = note or (lambda text: None)
    started = time.monotonic()
    folder = options.out.resolve()
    _clean(folder)
    capacity = options.capacity or default_capacity(options)
    planner_config = folder / "planner.toml"
    planner_config.write_text(_toml(node_document("planner", [
        {"name": "planner", "class": f"{AGENTS}:Planner"},
        {"name": "warehouse", "class": f"{AGENTS}:Warehouse",
         "settings": {"stores": options.stores, "seed": options.seed}}],
        seeds=[], llm=options.llm,
        market={"budget": 100.0, "per_seller": 60.0, "per_task": 20.0,
                "negotiation_window": 3.0, "ban_seconds": 600.0})))
    say("starting the planner's node")
    kills: list[ProviderNode] = []

    def on_event(node: ProviderNode, event: dict[str, Any]) -> None:
        if (options.kill and not kills and event.get("event") == "task_started"
                and event.get("capability") == FORECAST):
            node.process.kill()  # SIGKILL: no goodbye, the task is lost mid-way
            node.killed_at = time.monotonic() - started
            kills.append(node)
            tell(f"killed {node.spec.name} (SIGKILL) while it performed a forecast")

    async with open_node(load_config(planner_config)) as node:
        if node.host is None:
            raise AaexError("the planner's node runs no libp2p host: give it node.p2p addresses")
        say("starting 4 provider nodes")
        async with _providers(folder, node.host.addrs, options, on_event) as providers:
            say("waiting for the market to form")
            await _await_market(node, {FORECAST: 2, ROUTING: 2}, options.startup_timeout)
            await _fund(node.ledger, node, providers)
            planner = _agent(node, Planner)
            warehouse = _agent(node, Warehouse)
            outcome = await planner.plan(
                node.runtime.context(planner), request_text(options, capacity),
                warehouse=warehouse.address, groups=options.groups, zones=options.zones,
                on_step=say)
            say("writing the report")
            report = await _report(outcome, node, providers, kills, folder)
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    await asyncio.to_thread(_write_pictures, outcome, report, folder)  # matplotlib: seconds
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


PLANNER_LOG = "planner.log"
"""The in-process node's log; the CLI opens it before the run, so cleaning keeps it."""


def _clean(folder: Path) -> None:
    """Empty what a previous run left (keys, ledgers, logs), keep anything else."""
    folder.mkdir(parents=True, exist_ok=True)
    for child in folder.iterdir():
        if child.name == PLANNER_LOG:
            continue
        if child.name.endswith(("-data", ".key", ".log", ".toml", ".png", "report.json")):
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()


def _agent(node: Node, cls: type[Any]) -> Any:
    return next(a for a in node.runtime.agents.values() if isinstance(a, cls))


async def _fund(ledger: Ledger, node: Node, providers: list[ProviderNode]) -> None:
    """The planner's budget, and each provider's bond, posted with the planner's ledger."""
    await ledger.deposit(_agent(node, Planner).address, 100 * MINOR_UNITS, memo="budget")
    for provider in providers:
        await ledger.deposit(provider.address, 20 * MINOR_UNITS, memo="bond")


async def _report(outcome: PlanOutcome, node: Node, providers: list[ProviderNode],
                  kills: list[ProviderNode], folder: Path) -> dict[str, Any]:
    names = {p.address: p.spec.name for p in providers}
    names[_agent(node, Planner).address] = "planner"
    killed = kills[0] if kills else None
    subtasks = []
    scored: dict[str, dict[str, Any]] = {}  # store -> its forecaster, MASE and baseline's
    for task in outcome.subtasks:
        entry: dict[str, Any] = {"capability": task.capability, "label": task.label,
                                 "stores": task.stores}
        result = task.outcome
        attempts = result.attempts if result is not None else []
        entry["attempts"] = [{"provider": names.get(a.seller, a.seller), "verdict": a.verdict,
                              "agreement_id": a.agreement_id, "detail": a.detail}
                             for a in attempts]
        if isinstance(result, Delegated):
            seller = result.agreement.agreement.seller
            terms = result.agreement.agreement.terms
            entry.update(status="done", provider=names.get(seller, seller),
                         provider_address=seller, price=terms.price / MINOR_UNITS,
                         max_latency_ms=terms.max_latency_ms,
                         penalty=terms.penalty / MINOR_UNITS,
                         latency_ms=result.receipt.receipt.latency_ms,
                         agreement_id=result.agreement.id,
                         explanation=result.result["explanation"]["text"],
                         explained_by={k: result.result["explanation"][k]
                                       for k in ("model", "tokens")})
            if task.capability == FORECAST:
                for store, value in result.result["mase"].items():
                    scored[store] = {"provider": entry["provider"], "mase": value,
                                     "naive_mase": result.result["naive_mase"][store]}
        else:
            entry.update(status="failed", error=str(result))
        entry["rerouted"] = killed is not None and any(
            a["provider"] == killed.spec.name for a in entry["attempts"])
        subtasks.append(entry)
    ledger = node.ledger
    try:
        verification: Any = await ledger.verify()
        verified, problem_text = True, ""
    except LedgerTampered as exc:
        verification, verified, problem_text = None, False, str(exc)
    settlements = []
    for signed, receipt in await ledger.settled_receipts():
        r = receipt.receipt
        settlements.append({"agreement_id": signed.id,
                            "seller": names.get(r.seller, r.seller), "verdict": r.verdict,
                            "paid": r.release / MINOR_UNITS,
                            "penalty": r.penalty / MINOR_UNITS})
    balances = {names.get(a, a):
                {"available": b.available / MINOR_UNITS, "held": b.held / MINOR_UNITS}
                for a, b in (await ledger.balances()).items()}
    interpretation = outcome.interpretation
    plan = outcome.plan
    problem = outcome.problem
    return {
        "request": outcome.request,
        "job": interpretation.job.model_dump(), "job_source": interpretation.source,
        "job_fields_from_llm": list(interpretation.from_llm),
        "job_notes": list(interpretation.notes), "llm_answer": interpretation.raw,
        "nodes": [{"name": "planner", "agents": ["planner", "warehouse"],
                   "peer_id": node.status()["peer_id"], "admin": node.admin_url,
                   "killed": False}] + [
            {"name": p.spec.name, "agent_address": p.address,
             "peer_id": p.status.get("peer_id"), "cost": p.spec.cost,
             "exponent": p.spec.exponent, "latency_ms": p.spec.latency_ms,
             "killed": p is killed} for p in providers],
        "killed": None if killed is None else {
            "provider": killed.spec.name, "address": killed.address,
            "at_s": round(killed.killed_at or 0.0, 1),
            "subtasks": [t["label"] for t in subtasks if t["rerouted"]]},
        "subtasks": subtasks,
        "forecast": {
            "stores": {s: {"forecast": [round(v, 2) for v in outcome.forecasts[s]],
                           "units": outcome.quantities.get(s),
                           **scored.get(s, {"provider": None, "mase": None,
                                            "naive_mase": None})}
                       for s in sorted(outcome.forecasts)},
            "mase_mean": _mean([v["mase"] for v in scored.values()]),
            "naive_mase_mean": _mean([v["naive_mase"] for v in scored.values()])},
        "routing": {
            "trucks": problem.trucks if problem else None,
            "capacity": problem.capacity if problem else None,
            "depot": list(problem.depot) if problem else None,
            "stores": {s: list(xy) for s, xy in problem.stores.items()} if problem else {},
            "demand": dict(problem.demand) if problem else {},
            "routes": [{"path": list(r.path), "load": r.load, "distance_km": round(r.distance, 3)}
                       for r in plan.routes] if plan else [],
            "cost_km": round(plan.total_cost, 2) if plan else None,
            "feasible": plan is not None, "error": outcome.plan_error},
        "dispatch": outcome.dispatch.model_dump() if outcome.dispatch else None,
        "ledger": {"path": str(node.config.ledger_path), "verified": verified,
                   "problem": problem_text,
                   "entries": getattr(verification, "entries", None),
                   "head": getattr(verification, "head", None),
                   "agreements": getattr(verification, "agreements", None),
                   "settled": getattr(verification, "settled", None),
                   "settlements": settlements, "balances": balances},
        "files": {"report": str(folder / "report.json"),
                  "forecast_png": str(folder / "forecast.png"),
                  "routes_png": str(folder / "routes.png")},
    }


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _write_pictures(outcome: PlanOutcome, report: dict[str, Any], folder: Path) -> None:
    from . import plots

    if outcome.forecasts:
        history = {s: outcome.snapshot.history[s] for s in outcome.forecasts}
        plots.plot_forecasts(history, outcome.forecasts, folder / "forecast.png",
                             provider_of={s: v["provider"] or "?"
                                          for s, v in report["forecast"]["stores"].items()})
    if outcome.plan is not None and outcome.problem is not None:
        plots.plot_routes(outcome.problem, outcome.plan, folder / "routes.png",
                          title=f"{len(outcome.plan.routes)} trucks, "
                                f"{outcome.plan.total_cost:.0f} km")


def failures(report: dict[str, Any]) -> list[str]:
    """What is wrong with a demo's outcome (empty when every check passes)."""
    problems = []
    if report["routing"]["error"]:
        problems.append(report["routing"]["error"])
    failed = [t["label"] for t in report["subtasks"] if t["status"] != "done"]
    if failed:
        problems.append(f"subtasks not done: {failed}")
    if isinstance(report.get("dispatch"), dict) and "reason" in report["dispatch"]:
        problems.append(f"dispatch refused: {report['dispatch']['reason']}")
    return problems

