"""`aaex demo supply-chain`: a replenishment job bought on a live market of five nodes.

The planner's node (planner + warehouse) runs in this process; four provider nodes run as
`aaex node run` child processes (`children`), each with its own key, ledger, LLM and one
provider agent: two forecasters and two routers with different costs, SLAs and concession
strategies. All five meet in the libp2p DHT through the planner's node, find each other by
capability and trade with signed envelopes. The planner is funded as an operator funds an
agent: `POST /account/deposit` on its node's admin API with the token from its data dir,
which is what `aaex account deposit` sends. The first forecaster that starts a task is killed
with SIGKILL mid-task, so the planner has to reroute its subtasks; once the job is done, the
demo starts that node again from its config and data dir, the planner's recovery hands it the
receipts it missed, and its own books show the penalty it owes.

Both sides keep books: the planner's ledger holds its purchases (and the escrow of their
prices), each provider's ledger its sales. After the providers stop, the demo reads each
provider's ledger file and compares its statement with the planner's
(`marketplace.contracts.books.differences`).

What comes out, in the output folder: the node configurations, each node's log, every
node's ledger, ``nodes.json`` (the provider processes), ``report.json``, ``forecast.png`` and
``routes.png``; on the terminal a summary. A previous run's files there are first moved to
``previous-<time>/`` (`set_aside_previous`), never deleted. `run_demo` returns the report,
which tests check.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aaex_agents import Context
from aaex_agents.errors import AaexError
from discovery.query import Query
from marketplace.cli.admin_client import must_run, reach, request
from marketplace.contracts.books import Position, differences
from marketplace.contracts.errors import LedgerError, LedgerTampered
from marketplace.contracts.ledger import Ledger, open_ledger
from marketplace.node.accounts import account_document, statement_document
from marketplace.node.config import load_config
from marketplace.node.node import Node, open_node
from marketplace.trade.delegation import Delegated
from marketplace.trade.statements import reconcile
from marketplace.trade.strategies import BOULWARE, CONCEDER, LINEAR

from . import data, routing
from .agents import FORECAST, ROUTING, Planner, PlanOutcome, Subtask, Warehouse
from .children import NODES_FILE, ProviderNode, ProviderSpec, write_nodes_file
from .market_view import market_document, market_line
from .sovereignty import await_both_logs, report_part

AGENTS = "aaex_examples.supply_chain.agents"


PROVIDERS = (
    ProviderSpec("forecast-thrifty", "ForecastProvider", cost=1.0, exponent=BOULWARE,
                 latency_ms=50_000),
    ProviderSpec("forecast-express", "ForecastProvider", cost=2.0, exponent=CONCEDER,
                 latency_ms=30_000, also_train=True),
    ProviderSpec("route-thrifty", "RoutingProvider", cost=1.5, exponent=BOULWARE,
                 latency_ms=40_000),
    ProviderSpec("route-express", "RoutingProvider", cost=2.5, exponent=LINEAR,
                 latency_ms=25_000),
)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """How big a demo to run, and where to put what it makes.

    Attributes:
        out: output folder; a previous run's files there are moved to
            ``previous-<time>/`` first.
        stores: stores to supply; groups: forecast subtasks; zones: routing subtasks (1,
            the default, buys one solve of every store: split instances cost more km).
        trucks, capacity: the fleet; capacity None sizes trucks from recent sales.
        llm: "llamacpp" (the CPU model on every node) or "none".
        kill: kill the first forecaster that starts a task.
        startup_timeout: seconds each provider node may take to start.
        books_timeout: seconds, after the job, for every provider to take its receipts
            (the killed one once it is back).
    """

    out: Path = Path("supply-chain-demo")
    stores: int = 20
    groups: int = 4
    zones: int = 1
    trucks: int = 3
    capacity: int | None = None
    safety_stock_pct: int = 10
    llm: str = "llamacpp"
    kill: bool = True
    startup_timeout: float = 180.0
    books_timeout: float = 60.0
    seed: int = 7


Step = Callable[[str], None]
DEMO_STEPS = 9
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


@asynccontextmanager
async def _running(folder: Path, nodes: list[ProviderNode],
                   on_event: Callable[[ProviderNode, dict[str, Any]], None],
                   options: DemoOptions) -> AsyncIterator[None]:
    """Start every provider node; on the way out, stop them (a restarted one included)."""
    try:
        for node in nodes:
            await node.start(on_event)
        await asyncio.gather(*(n.ready(options.startup_timeout) for n in nodes))
        write_nodes_file(folder, nodes)
        yield
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
    between (the kill, the restart). A previous run's files in the output folder are moved
    aside first, except ``planner.log``, which the CLI has already set aside and opened for
    this run.

    Raises:
        AaexError: a node did not start (or restart), the market did not form in time, or
            the planner's node refused the deposit of its budget.
    """
    say = step or (lambda text: None)
    tell = note or (lambda text: None)
    started = time.monotonic()
    folder = options.out.resolve()
    moved = set_aside_previous(folder, keep={PLANNER_LOG})
    if moved is not None:
        tell(f"the previous run's files are in {moved}")
    capacity = options.capacity or default_capacity(options)
    planner_config = folder / "planner.toml"
    planner_config.write_text(_toml(node_document("planner", [
        {"name": "planner", "class": f"{AGENTS}:Planner"},
        {"name": "warehouse", "class": f"{AGENTS}:Warehouse",
         "settings": {"stores": options.stores, "seed": options.seed}}],
        seeds=[], llm=options.llm,
        market={"budget": float(BUDGET), "per_seller": 60.0, "per_task": 20.0,
                "negotiation_window": 3.0, "ban_seconds": 600.0,
                # Recovery hands a restarted seller the receipts it missed on its next pass.
                "resolve_period": RESOLVE_PERIOD_S})))
    say("starting the planner's node")
    providers = [ProviderNode(spec, folder / f"{spec.name}.toml", folder / f"{spec.name}.log")
                 for spec in PROVIDERS]
    kills: list[ProviderNode] = []

    def elapsed() -> float:
        return time.monotonic() - started

    def on_event(node: ProviderNode, event: dict[str, Any]) -> None:
        if (options.kill and not kills and event.get("event") == "task_started"
                and event.get("capability") == FORECAST):
            node.kill(elapsed())
            kills.append(node)
            tell(f"killed {node.spec.name} (SIGKILL) while it performed a forecast")
        if event.get("event") == "data_use_refused":
            tell(f"{node.spec.name} tried to keep the warehouse's sales history for "
                 f"{event.get('purpose')}; its own node refused: {event.get('reason')}")

    async with open_node(load_config(planner_config)) as node:
        if node.host is None:
            raise AaexError("the planner's node runs no libp2p host: give it node.p2p addresses")
        for provider in providers:
            provider.config.write_text(_toml(provider_document(provider.spec, node.host.addrs,
                                                               options.llm)))
        say("starting 4 provider nodes")
        async with _running(folder, providers, on_event, options):
            say("waiting for the market to form")
            await _await_market(node, {FORECAST: 2, ROUTING: 2}, options.startup_timeout)
            await _fund(node)
            planner = _agent(node, Planner)
            warehouse = _agent(node, Warehouse)
            names = {p.address: p.spec.name for p in providers}

            def on_market(task: Subtask, event: str, details: dict[str, Any]) -> None:
                line = market_line(f"{task.capability} {task.label}", event, details, names)
                if line is not None:
                    tell(line)

            outcome = await planner.plan(
                node.runtime.context(planner), request_text(options, capacity),
                warehouse=warehouse.address, groups=options.groups, zones=options.zones,
                on_step=say, on_market=on_market)
            say("closing the books on both sides")
            for killed in kills:
                # Only now: a node loading its model while the others work would slow them
                # past their SLAs on a small machine. Its receipts wait on the planner's books.
                await killed.restart(on_event, options.startup_timeout, elapsed)
                write_nodes_file(folder, providers)
                tell(f"restarted {killed.spec.name} from its config and data dir")
            await _await_books_agree(node.runtime.context(planner), node.ledger, providers,
                                     options.books_timeout)
            untaken = [signed.id for signed, _ in await node.ledger.unnotified_receipts()]
            logs, held = await await_both_logs(node.ledger, warehouse.address,
                                               {p.spec.name: p.config for p in providers},
                                               options.books_timeout)
            say("writing the report")
            report = await _report(outcome, node, providers, kills, folder)
            report["sovereignty"] = report_part(
                warehouse.issued, warehouse.address,
                [t.outcome for t in outcome.subtasks
                 if t.capability == FORECAST and isinstance(t.outcome, Delegated)],
                logs, held, {p.address: p.spec.name for p in providers})
        # The providers have stopped: their ledger files are complete.
        report["books"] = await _books(node.ledger, planner.address, providers, untaken)
    report["elapsed_s"] = round(elapsed(), 1)
    await asyncio.to_thread(_write_pictures, outcome, report, folder)  # matplotlib: seconds
    (folder / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


BUDGET = 100
"""Credits deposited for the planner (its node's market budget is the same)."""
RESOLVE_PERIOD_S = 0.5
"""How often the planner's node passes over open purchases and receipts not yet taken."""
PLANNER_LOG = "planner.log"
"""The in-process node's log; the CLI sets a previous run aside before it opens it."""
RUN_FILES = ("-data", ".key", ".log", ".toml", ".png", "report.json", NODES_FILE, ".partial")
"""Endings of the names a run writes into its folder."""


def set_aside_previous(folder: Path, *, keep: Collection[str] = ()) -> Path | None:
    """Move a previous run's files (keys, ledgers, logs, configs, report) to a new subfolder.

    A run's ledgers hold the record of its money, so they are never deleted: a second run
    moves the first one's files to ``previous-<UTC time>/`` and starts afresh. Names in
    `keep`, and anything a run does not write, stay. Returns the new subfolder, or None
    when there was nothing to move.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(child for child in folder.iterdir()
                   if child.name.endswith(RUN_FILES) and child.name not in keep)
    if not found:
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"previous-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"previous-{stamp}-{n}"
    target.mkdir()
    for child in found:
        child.rename(target / child.name)
    return target


def provider_document(spec: ProviderSpec, seeds: list[str], llm: str) -> dict[str, Any]:
    """The TOML document of one provider node."""
    return node_document(spec.name, [{
        "name": spec.name, "class": f"{AGENTS}:{spec.agent_class}",
        "settings": {"cost": spec.cost, "exponent": spec.exponent,
                     "latency_ms": spec.latency_ms, "deadline_s": spec.deadline_s,
                     **({"also_train": True} if spec.also_train else {})}}],
        seeds=seeds, llm=llm)


def _agent(node: Node, cls: type[Any]) -> Any:
    return next(a for a in node.runtime.agents.values() if isinstance(a, cls))


async def _fund(node: Node) -> None:
    """Deposit the planner's budget as its operator would: `aaex account deposit`.

    That command finds the running node through its data dir (``admin.json``, and the
    token in ``admin.token``) and sends ``POST /account/deposit``; so does this. Sellers
    need no money: a sale holds nothing, the buyer's books escrow the price.

    Raises:
        AdminRefused: the node refused the deposit (its reason in one line).
        NodeNotRunning: the node's admin API cannot be found.
    """
    access = must_run(await reach(node.config))
    await request(access, "POST", "/account/deposit",
                  body={"agent": "planner", "amount": str(BUDGET), "memo": "budget"})


async def _await_books_agree(ctx: Context, ledger: Ledger, providers: list[ProviderNode],
                             timeout: float) -> None:
    """Wait until each provider's statement with the planner matches the planner's books.

    A provider killed mid-trade learns after its restart what it missed: the receipts (the
    planner's recovery hands them over on its next pass, every `RESOLVE_PERIOD_S`; a receipt
    the provider has not taken shows as a difference) and the sales whose countersignature
    never reached the planner (the provider asks; the planner's books close them as expired,
    unfunded).
    Asked over the market protocol, as an operator's ``aaex account reconcile`` asks; the
    books check after the providers stop reads their ledger files and says what differs.
    """
    deadline = time.monotonic() + timeout
    pending = list(providers)
    while pending and time.monotonic() < deadline:
        checks = await asyncio.gather(*(reconcile(ctx, ledger, p.address, timeout=5)
                                        for p in pending))
        pending = [p for p, check in zip(pending, checks, strict=True) if check.differences]
        if pending:
            await asyncio.sleep(RESOLVE_PERIOD_S)


async def _books(ledger: Ledger, planner: str, providers: list[ProviderNode],
                 untaken: list[str]) -> dict[str, Any]:
    """Each provider's statement with the planner, on both sides' books, and whether they agree.

    The provider's side is read from its own ledger file after it stopped: what its node
    recorded, not what the planner believes.
    """
    rows = []
    for provider in providers:
        ours = await ledger.statement(provider.address)
        path = load_config(provider.config).ledger_path
        row: dict[str, Any] = {"provider": provider.spec.name, "address": provider.address,
                               "ledger": str(path), "planner_books": statement_document(ours),
                               "provider_books": None, "provider_account": None,
                               "verified": False}
        try:
            async with open_ledger(path) as books:
                theirs = await books.statement(planner)
                position = (await books.positions()).get(provider.address, Position())
                await books.verify()
        except LedgerError as exc:  # unreadable or tampered: the comparison says so
            gaps = [f"the provider's ledger fails: {exc}"]
        else:
            gaps = differences(ours, theirs)
            if ours.net != -theirs.net:
                gaps.append(f"nets do not cancel: {ours.net} and {theirs.net} micro-credits")
            row.update(provider_books=statement_document(theirs), verified=True,
                       provider_account=account_document(provider.spec.name,
                                                         provider.address, position))
        row.update(agreed=not gaps, differences=gaps)
        rows.append(row)
    return {"planner": planner, "agreed": all(r["agreed"] for r in rows),
            "receipts_untaken": untaken, "providers": rows}


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
        entry["market"] = market_document(task.market, names)
        if isinstance(result, Delegated):
            seller = result.agreement.agreement.seller
            terms = result.agreement.agreement.terms
            entry.update(status="done", provider=names.get(seller, seller),
                         provider_address=seller, **terms.price.document("price"),
                         max_latency_ms=terms.max_latency_ms,
                         **terms.penalty.document("penalty"),
                         latency_ms=result.receipt.receipt.latency_ms,
                         agreement_id=result.agreement.id,
                         explanation=result.result["explanation"]["text"],
                         explained_by={**{k: result.result["explanation"].get(k)
                                          for k in ("model", "tokens", "raw", "dropped")},
                                       "facts": result.result.get("facts", "")})
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
                            **r.release.document("paid"), **r.penalty.document("penalty")})
    # Money on the planner's books: its own, and the prices released to its sellers there;
    # receivable and payable are what signed receipts say each party owes (books.Line).
    positions = {names.get(a, a): {"address": a, **x.available.document("available"),
                                   **x.held.document("held"),
                                   **x.receivable.document("receivable"),
                                   **x.payable.document("payable")}
                 for a, x in (await ledger.positions()).items()}
    interpretation = outcome.interpretation
    plan = outcome.plan
    problem = outcome.problem
    local = await _local_solve(problem)
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
             "pid": p.process.pid if p.process else None, "killed": p is killed}
            for p in providers],
        "killed": None if killed is None else {
            "provider": killed.spec.name, "address": killed.address,
            "at_s": round(killed.killed_at or 0.0, 1),
            "restarted_at_s": None if killed.restarted_at is None else
            round(killed.restarted_at, 1),
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
            "feasible": plan is not None, "error": outcome.plan_error,
            "local": local,
            "above_local_pct": None if plan is None or local["cost_km"] is None
            else round(100 * (plan.total_cost / local["cost_km"] - 1), 2)},
        "dispatch": outcome.dispatch.model_dump() if outcome.dispatch else None,
        "ledger": {"path": str(node.config.ledger_path), "verified": verified,
                   "problem": problem_text,
                   "entries": getattr(verification, "entries", None),
                   "head": getattr(verification, "head", None),
                   "agreements": getattr(verification, "agreements", None),
                   "settled": getattr(verification, "settled", None),
                   "settlements": settlements, "positions": positions},
        "files": {"report": str(folder / "report.json"),
                  "forecast_png": str(folder / "forecast.png"),
                  "routes_png": str(folder / "routes.png")},
    }


LOCAL_SOLVE_S = 1.0
"""Seconds of the planner's own solve of the instance it bought routes for: what a router is
asked to spend (the task's ``max_seconds``)."""


async def _local_solve(problem: routing.RoutingProblem | None) -> dict[str, Any]:
    """The same instance solved here, as a planner without a market would: what the bought
    routes are compared with (``above_local_pct``)."""
    if problem is None:
        return {"cost_km": None, "seconds": LOCAL_SOLVE_S, "error": "no routing problem"}
    try:
        plan = await asyncio.to_thread(routing.solve, problem, max_seconds=LOCAL_SOLVE_S)
    except routing.InfeasibleProblemError as exc:
        return {"cost_km": None, "seconds": LOCAL_SOLVE_S, "error": str(exc)}
    return {"cost_km": round(plan.total_cost, 2), "seconds": LOCAL_SOLVE_S, "error": ""}


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
    books = report.get("books") or {}
    if books.get("receipts_untaken"):
        problems.append(f"receipts no seller took: {len(books['receipts_untaken'])}")
    for row in books.get("providers", []):
        problems += [f"books with {row['provider']}: {gap}" for gap in row["differences"]]
    problems += (report.get("sovereignty") or {}).get("problems", [])
    return problems

