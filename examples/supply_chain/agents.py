"""The supply-chain demo's agents: a warehouse, a planner, and the providers it buys from.

- `Warehouse` (on the planner's node) owns the enterprise's data: its stores, their sales
  history and the depot's stock. It answers the planner's `NetworkQuery` and reserves stock
  for a `DispatchOrder`.
- `ForecastProvider` sells ``forecast.demand``: Holt-Winters per store, scored on held-out
  weeks against seasonal naive (MASE), explained by its node's LLM.
- `RoutingProvider` sells ``route.vrp``: a capacitated VRP solved by PyVRP, explained by its
  node's LLM.
- `Planner` buys both through `ctx.delegate` (negotiation, signed agreements, settlement,
  rerouting), then checks what it bought: forecasts cover every store, the routes pass an
  independent feasibility check, the warehouse can dispatch them.

The compute runs in worker threads, never on the event loop: a node keeps answering
envelopes while it fits models or searches routes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from aaex_agents import Agent, Context, Message, handler
from aaex_agents.errors import LLMError, UsageError
from aaex_agents.llm import LLM, system, user
from aaex_agents.money import ONE_CREDIT, Credits
from marketplace.contracts.grant import SignedGrant
from marketplace.trade.delegation import Delegated
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.grants import SellerUses
from marketplace.trade.selling import ServiceSeller

from . import data, forecasting, routing
from .grounding import ground
from .job import Interpretation, JobError, ReplenishmentJob, interpret
from .sovereignty import FORECAST, GrantIssued, GrantRefused, GrantRequest, issue_grant, seller_uses

logger = logging.getLogger(__name__)

ROUTING = "route.vrp"
HOLDOUT_DAYS = 14
MAX_GRANTS = 1_000
"""Grants one warehouse issues in all (it keeps each one for the report)."""
"""Days each forecast provider holds out to score its method (two weekly seasons)."""


# -- messages between the planner and the warehouse --------------------------------------

class NetworkQuery(Message, type="supply.network_query/1"):
    """The planner asks for the stores it must supply, with their sales history."""

    stores: int


class NetworkSnapshot(Message, type="supply.network/1"):
    """The warehouse's stores (coordinates in km, depot at the origin) and daily sales."""

    depot: tuple[float, float]
    stores: dict[str, tuple[float, float]]
    history: dict[str, list[float]]
    stock: int
    """Units on hand at the depot."""


class DispatchOrder(Message, type="supply.dispatch/1"):
    """The planner's final plan: units per store and the truck routes that carry them."""

    quantities: dict[str, int]
    routes: list[list[str]]


class DispatchConfirmed(Message, type="supply.dispatched/1"):
    """The warehouse reserved the stock and issued one pick list per truck."""

    reserved: int
    stock_left: int
    pick_lists: list[dict[str, int]]


class DispatchRefused(Message, type="supply.dispatch_refused/1"):
    """The warehouse cannot dispatch the order as given; `reason` says why."""

    reason: str


class QueryRefused(Message, type="supply.query_refused/1"):
    """The warehouse cannot answer a `NetworkQuery`; `reason` says why."""

    reason: str


# -- the warehouse ------------------------------------------------------------------------

class Warehouse(Agent):
    """Holds the depot's data and stock; answers only what it is asked."""

    def __init__(self, *args: Any, stores: int = 20, weeks: int = 12, seed: int = 7,
                 stock: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.network = data.generate(data.SyntheticConfig(stores=stores, weeks=weeks, seed=seed))
        # Enough for about two weeks of every store's recent sales unless told otherwise.
        recent = sum(sum(series[-14:]) for series in self.network.demand.values())
        self.stock = int(stock if stock is not None else recent * 1.2)
        self.issued: list[SignedGrant] = []
        """Every grant of its sales history, in order (the demo's report lists them)."""

    @handler
    async def on_query(self, ctx: Context, msg: NetworkQuery) -> NetworkSnapshot | QueryRefused:
        """The first `msg.stores` stores; asking for more than exist is refused."""
        if not 1 <= msg.stores <= len(self.network.stores):
            return QueryRefused(reason=f"this depot supplies {len(self.network.stores)} "
                                       f"stores, not {msg.stores}")
        chosen = self.network.stores[:msg.stores]
        return NetworkSnapshot(depot=self.network.depot,
                               stores={s.id: (s.x, s.y) for s in chosen},
                               history={s.id: self.network.demand[s.id] for s in chosen},
                               stock=self.stock)

    @handler
    async def on_grant_request(self, ctx: Context, msg: GrantRequest
                               ) -> GrantIssued | GrantRefused:
        """Grant a forecaster its stores' history: forecast.demand, an hour, no passing on."""
        if len(self.issued) >= MAX_GRANTS:
            return GrantRefused(reason=f"this warehouse issues at most {MAX_GRANTS} grants")
        try:
            signed = issue_grant(self.identity, msg, self.network.demand, ctx.clock.now_ms())
        except KeyError as exc:
            return GrantRefused(reason=f"no sales history of store {exc}")
        except ValueError as exc:
            return GrantRefused(reason=str(exc).splitlines()[0])
        self.issued.append(signed)
        return GrantIssued(grant=signed.to_wire())

    @handler
    async def on_dispatch(self, ctx: Context, msg: DispatchOrder
                          ) -> DispatchConfirmed | DispatchRefused:
        """Reserve the stock of a plan whose routes deliver exactly the ordered units."""
        routed = [store for route in msg.routes for store in route]
        if sorted(routed) != sorted(msg.quantities):
            return DispatchRefused(reason="the routes do not visit each ordered store once")
        total = sum(msg.quantities.values())
        if total > self.stock:
            return DispatchRefused(reason=f"{total} units ordered, {self.stock} in stock")
        self.stock -= total
        return DispatchConfirmed(
            reserved=total, stock_left=self.stock,
            pick_lists=[{store: msg.quantities[store] for store in route}
                        for route in msg.routes])


# -- providers ----------------------------------------------------------------------------

async def explain(ctx: Context, facts: str) -> dict[str, Any]:
    """The node's LLM explains a result, keeping only sentences the facts back.

    Returns ``{"text", "raw", "dropped", "model", "tokens"}``: `text` is what survived the
    grounding filter (`grounding.ground`: a sentence with a number that is not in the facts
    is dropped), `raw` what the model wrote, `dropped` the sentences removed. Without a
    model, or when it fails, `text` says so, `raw` is empty and `tokens` is 0: the result
    itself stands on its own.
    """
    try:
        llm: LLM = ctx.llm
    except UsageError:
        return {"text": "(this node runs no language model)", "raw": "", "dropped": [],
                "model": None, "tokens": 0}
    try:
        answer = await llm.chat(
            # Asked for advice rather than a summary: a small model given "explain this"
            # mostly repeats the facts word for word.
            [system("You are a supply-chain analyst."),
             user(f"Facts:\n{facts}\n\nWhat should the store manager do? Answer in one "
                  "sentence.")], max_tokens=48, timeout=60)
    except LLMError as exc:
        return {"text": f"(no explanation: {exc})", "raw": "", "dropped": [], "model": None,
                "tokens": 0}
    grounded = ground(answer.text, facts)
    return {"text": grounded.kept or "(every sentence had a number the facts do not back)",
            "raw": answer.text.strip(), "dropped": list(grounded.dropped),
            "model": answer.model, "tokens": answer.usage.completion_tokens}


def _log_task(ctx: Context, capability: str, size: int) -> None:
    # A structured event: the demo watches for it to kill a provider mid-task.
    ctx.logger.info("performing %s for %s (%d stores)", capability, ctx.sender, size,
                    extra={"event": "task_started", "capability": capability})


class ForecastTask(BaseModel):
    """Units sold per day, by store, and how many days ahead to forecast."""

    history: dict[str, list[float]]
    horizon: int = Field(ge=1)


class ForecastResult(BaseModel):
    forecast: dict[str, list[float]]
    method: str
    mase: dict[str, float]
    naive_mase: dict[str, float]
    explanation: dict[str, Any]
    facts: str
    provider: str


class ForecastProvider(ServiceSeller):
    """Forecasts daily demand per store with Holt-Winters and scores it on held-out days."""

    capability = FORECAST
    task_model: ClassVar[type[BaseModel]] = ForecastTask
    result_model: ClassVar[type[BaseModel]] = ForecastResult

    def __init__(self, *args: Any, also_train: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.also_train = also_train
        """A dishonest forecaster: it also tries to keep each task's sales history to train
        its own model, which the owner's grant does not cover; its own node refuses it."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        """Task: ``{"history": {store: [units per day]}, "horizon": days}``."""
        history = {str(k): [float(x) for x in v] for k, v in dict(task["history"]).items()}
        horizon = int(task["horizon"])
        if self.also_train:
            refused = await self.use_data(ctx, task, purpose="training")
            if refused is not None:
                ctx.logger.warning("not allowed to train on the sales history: %s", refused,
                                   extra={"event": "data_use_refused", "purpose": "training",
                                          "reason": refused})
        _log_task(ctx, FORECAST, len(history))
        fitted, held = data.split_holdout(history, HOLDOUT_DAYS // data.PERIOD)
        forecasts, score = await asyncio.gather(
            asyncio.to_thread(forecasting.forecast_stores, history, horizon),
            asyncio.to_thread(forecasting.evaluate, fitted, held))
        total = sum(sum(f) for f in forecasts.values())
        facts = (f"Forecast for stores {', '.join(sorted(history))}: {total:.0f} units over the "
                 f"next {horizon} days. Method: Holt-Winters with weekly seasonality. Accuracy "
                 f"on the last {HOLDOUT_DAYS} days: MASE {score.method_mase:.2f} versus "
                 f"{score.naive_mase:.2f} for the seasonal-naive baseline (lower is better).")
        return {"forecast": forecasts, "method": "holt-winters",
                "mase": {s: round(v.method_mase, 4) for s, v in score.per_store.items()},
                "naive_mase": {s: round(v.naive_mase, 4) for s, v in score.per_store.items()},
                "explanation": await explain(ctx, facts), "facts": facts,
                "provider": self.name}


class RoutingTask(BaseModel):
    """A capacitated VRP: depot and stores as [x, y] km, demand in units per store."""

    depot: list[float] = Field(min_length=2, max_length=2)
    stores: dict[str, list[float]]
    demand: dict[str, int]
    trucks: int = Field(ge=1)
    capacity: int = Field(ge=1)
    max_seconds: float = Field(default=1.0, gt=0)


class RoutingResult(BaseModel):
    routes: list[dict[str, Any]]
    cost_km: float
    solver: str
    explanation: dict[str, Any]
    facts: str
    provider: str


class RoutingProvider(ServiceSeller):
    """Plans truck routes for a capacitated VRP with PyVRP."""

    capability = ROUTING
    task_model: ClassVar[type[BaseModel]] = RoutingTask
    result_model: ClassVar[type[BaseModel]] = RoutingResult

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        """Task: depot, stores (id -> [x, y] km), demand (id -> units), trucks, capacity."""
        problem = problem_of(task)
        _log_task(ctx, ROUTING, len(problem.stores))
        seconds = min(5.0, max(0.1, float(task.get("max_seconds", 1.0))))
        plan = await asyncio.to_thread(routing.solve, problem, max_seconds=seconds)
        loads = ", ".join(f"{r.load}/{problem.capacity}" for r in plan.routes)
        facts = (f"{len(problem.stores)} stores served by {len(plan.routes)} of "
                 f"{problem.trucks} trucks, {plan.total_cost:.1f} km in total; truck loads "
                 f"{loads} units.")
        return {"routes": [{"path": list(r.path), "load": r.load, "distance": r.distance}
                           for r in plan.routes],
                "cost_km": plan.total_cost, "solver": "pyvrp",
                "explanation": await explain(ctx, facts), "facts": facts,
                "provider": self.name}


def problem_of(task: dict[str, Any]) -> routing.RoutingProblem:
    """The routing problem a ``route.vrp`` task describes (raises ValueError when malformed)."""
    depot = task["depot"]
    return routing.RoutingProblem(
        depot=(float(depot[0]), float(depot[1])),
        stores={str(k): (float(v[0]), float(v[1])) for k, v in dict(task["stores"]).items()},
        demand={str(k): int(v) for k, v in dict(task["demand"]).items()},
        trucks=int(task["trucks"]), capacity=int(task["capacity"]))


def plan_of(result: dict[str, Any], problem: routing.RoutingProblem) -> routing.Plan:
    """A provider's routes rebuilt from its path alone: loads and distances recomputed."""
    return routing.Plan(routes=tuple(
        routing.make_route(problem, [s for s in route["path"] if s != routing.DEPOT])
        for route in result["routes"]))


# -- the planner --------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Terms:
    """What the planner offers for each subtask."""

    forecast_budget: Credits = ONE_CREDIT * 6
    routing_budget: Credits = ONE_CREDIT * 8
    deadline_s: float = 240.0
    forecast_latency_ms: float = 60_000
    routing_latency_ms: float = 45_000
    penalty: Credits = ONE_CREDIT


@dataclass
class Subtask:
    """One delegated piece of the job and how it ended."""

    capability: str
    label: str
    stores: list[str]
    outcome: Delegated | DelegationFailed | None = None
    market: list[dict[str, Any]] = field(default_factory=list)
    """What the market showed the planner, in order: ``{"event": ..., **details}`` for the
    sellers found, each round's bids and each award (`DelegationProgress` events)."""


@dataclass
class PlanOutcome:
    """Everything the planner did for one request."""

    request: str
    interpretation: Interpretation
    snapshot: NetworkSnapshot
    subtasks: list[Subtask] = field(default_factory=list)
    forecasts: dict[str, list[float]] = field(default_factory=dict)
    quantities: dict[str, int] = field(default_factory=dict)
    problem: routing.RoutingProblem | None = None
    plan: routing.Plan | None = None
    plan_error: str = ""
    dispatch: DispatchConfirmed | DispatchRefused | None = None


MarketWatch = Callable[[Subtask, str, dict[str, Any]], None]
"""(subtask, event, details): told each market event of each subtask as it happens."""


def groups_of(stores: list[str], groups: int) -> list[list[str]]:
    """Split stores into `groups` contiguous groups of near-equal size (none empty)."""
    groups = max(1, min(groups, len(stores)))
    size = math.ceil(len(stores) / groups)
    return [stores[i:i + size] for i in range(0, len(stores), size)]


def zones_of(problem: routing.RoutingProblem, zones: int) -> list[tuple[list[str], int]]:
    """Split the stores into angular sectors around the depot, each with its own trucks.

    The trucks are shared out evenly first; each sector then sweeps around the depot taking
    stores until it holds its share of the demand. A split where some sector's stores do not
    pack into its trucks (first-fit decreasing) is not used; every starting angle is tried,
    and with no usable split there is one zone.
    """
    ids = sorted(problem.stores, key=lambda s: math.atan2(
        problem.stores[s][1] - problem.depot[1], problem.stores[s][0] - problem.depot[0]))
    if zones < 2 or problem.trucks < zones or len(ids) < 2 * zones:
        return [(ids, problem.trucks)]
    shares = [problem.trucks // zones + (1 if z < problem.trucks % zones else 0)
              for z in range(zones)]
    for start in range(len(ids)):
        split = _sweep(ids[start:] + ids[:start], problem, shares)
        if split is not None:
            return split
    return [(ids, problem.trucks)]


def _sweep(order: list[str], problem: routing.RoutingProblem, shares: list[int]
           ) -> list[tuple[list[str], int]] | None:
    total = sum(problem.demand.values())
    result: list[tuple[list[str], int]] = []
    position = 0
    for zone, trucks in enumerate(shares):
        if zone == len(shares) - 1:
            members = order[position:]
        else:
            target = total * trucks / problem.trucks
            members, load = [], 0
            while position < len(order) and load + problem.demand[order[position]] <= target:
                members.append(order[position])
                load += problem.demand[order[position]]
                position += 1
        if not members or not _packs([problem.demand[s] for s in members], trucks,
                                     problem.capacity):
            return None
        result.append((members, trucks))
    return result


def _packs(demands: list[int], trucks: int, capacity: int) -> bool:
    """True when first-fit decreasing loads `demands` into `trucks` bins of `capacity`."""
    bins = [0] * trucks
    for demand in sorted(demands, reverse=True):
        fit = next((i for i, used in enumerate(bins) if used + demand <= capacity), None)
        if fit is None:
            return False
        bins[fit] += demand
    return True


class Planner(Agent):
    """Turns a replenishment request into a dispatched plan, buying the work it lacks."""

    def __init__(self, *args: Any, terms: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.terms = Terms(**(terms or {}))

    async def plan(self, ctx: Context, request: str, *, warehouse: str, groups: int = 4,
                   zones: int = 1, on_step: Callable[[str], None] | None = None,
                   on_market: MarketWatch | None = None) -> PlanOutcome:
        """Run the whole job; failures of single subtasks are recorded, not raised.

        Routing is bought as one solve of every store (`zones` 1) unless told otherwise:
        zones split the instance, and separate solves of its parts cost more km than one.
        Every router bids for it; the runner-up is who the market turns to when the winner
        fails. `on_market` hears each subtask's market as it happens (also kept in
        `Subtask.market`).

        Raises:
            JobError: the request cannot be read as a job, or asks for stores the warehouse
                does not supply.
            AaexError: the warehouse cannot be reached.
        """
        step = on_step or (lambda text: None)
        try:
            llm: LLM | None = ctx.llm
        except UsageError:
            llm = None
        step("reading the request")
        interpretation = await interpret(llm, request)
        job = interpretation.job
        snapshot = await ctx.ask(warehouse, NetworkQuery(stores=job.stores), timeout=30)
        if isinstance(snapshot, QueryRefused):
            raise JobError(f"the warehouse refuses the job: {snapshot.reason}")
        if not isinstance(snapshot, NetworkSnapshot):
            raise JobError(f"the warehouse answered {type(snapshot).__name__}")
        outcome = PlanOutcome(request=request, interpretation=interpretation, snapshot=snapshot)
        stores = sorted(snapshot.stores)
        step(f"forecasting {len(stores)} stores in {min(groups, len(stores))} groups")
        forecast_tasks = [Subtask(FORECAST, f"{g[0]}-{g[-1]}", g)
                          for g in groups_of(stores, groups)]
        job_id = os.urandom(4).hex()
        # The history is the warehouse's: each forecaster gets it under its own grant.
        await self._delegate(ctx, forecast_tasks, lambda t: {
            "history": {s: snapshot.history[s] for s in t.stores},
            "horizon": job.horizon_days}, self.terms.forecast_budget,
            self.terms.forecast_latency_ms, on_market,
            lambda t: seller_uses(ctx, warehouse, f"{job_id}/{t.label}", t.stores))
        outcome.subtasks += forecast_tasks
        for task in forecast_tasks:
            if isinstance(task.outcome, Delegated):
                outcome.forecasts.update(task.outcome.result["forecast"])
        missing = sorted(set(stores) - set(outcome.forecasts))
        if missing:
            outcome.plan_error = f"no forecast for stores {missing}"
            return outcome
        outcome.quantities = quantities(outcome.forecasts, job)
        problem = routing.RoutingProblem(
            depot=snapshot.depot, stores=dict(snapshot.stores), demand=outcome.quantities,
            trucks=job.trucks, capacity=job.truck_capacity)
        outcome.problem = problem
        split = zones_of(problem, zones)
        step(f"routing {len(stores)} stores in {len(split)} zone(s)")
        routing_tasks = [Subtask(ROUTING, f"zone {n + 1} ({trucks} trucks)" if len(split) > 1
                                 else f"all {len(members)} stores ({trucks} trucks)", members)
                         for n, (members, trucks) in enumerate(split)]
        trucks_of = {t.label: trucks for t, (_, trucks) in zip(routing_tasks, split, strict=True)}
        await self._delegate(ctx, routing_tasks, lambda t: {
            "depot": list(problem.depot), "stores": {s: list(problem.stores[s]) for s in t.stores},
            "demand": {s: problem.demand[s] for s in t.stores}, "trucks": trucks_of[t.label],
            "capacity": problem.capacity, "max_seconds": 1.0}, self.terms.routing_budget,
            self.terms.routing_latency_ms, on_market)
        outcome.subtasks += routing_tasks
        outcome.plan, outcome.plan_error = self._assemble(problem, routing_tasks)
        if outcome.plan is None:
            return outcome
        step("dispatching")
        reply = await ctx.ask(
            warehouse, DispatchOrder(quantities=outcome.quantities,
                                     routes=[list(r.stores) for r in outcome.plan.routes]),
            timeout=30)
        if isinstance(reply, DispatchConfirmed | DispatchRefused):
            outcome.dispatch = reply
        return outcome

    async def _delegate(self, ctx: Context, tasks: list[Subtask],
                        task_of: Callable[[Subtask], dict[str, Any]], budget: Credits,
                        latency_ms: float, on_market: MarketWatch | None = None,
                        use_of: Callable[[Subtask], SellerUses] | None = None) -> None:
        async def one(task: Subtask) -> None:
            def seen(event: str, details: dict[str, Any]) -> None:
                task.market.append({"event": event, **details})
                if on_market is not None:
                    on_market(task, event, details)
            try:
                task.outcome = await ctx.delegate(
                    task.capability, task_of(task), progress=seen, budget=budget,
                    deadline=self.terms.deadline_s, max_latency_ms=latency_ms,
                    penalty=self.terms.penalty, use=None if use_of is None else use_of(task))
            except DelegationFailed as failed:
                task.outcome = failed
        await asyncio.gather(*(one(t) for t in tasks))

    @staticmethod
    def _assemble(problem: routing.RoutingProblem, tasks: list[Subtask]
                  ) -> tuple[routing.Plan | None, str]:
        """Join the zones' routes and check the whole plan against the whole problem."""
        routes: list[routing.Route] = []
        for task in tasks:
            if not isinstance(task.outcome, Delegated):
                return None, f"{task.label}: no provider delivered routes"
            try:
                routes += plan_of(task.outcome.result, problem).routes
            except (KeyError, TypeError, ValueError) as exc:
                return None, f"{task.label}: malformed routes ({exc})"
        plan = routing.Plan(routes=tuple(routes))
        try:
            routing.check_plan(problem, plan)
        except routing.PlanViolationError as exc:
            return None, f"the routes fail the feasibility check: {exc}"
        return plan, ""


def quantities(forecasts: dict[str, list[float]], job: ReplenishmentJob) -> dict[str, int]:
    """Units to deliver per store: forecast demand over the horizon plus safety stock."""
    factor = 1 + job.safety_stock_pct / 100
    return {store: max(1, math.ceil(sum(series[:job.horizon_days]) * factor))
            for store, series in forecasts.items()}
