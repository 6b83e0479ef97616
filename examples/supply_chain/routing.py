"""Delivery routing: a capacitated VRP solved with PyVRP, and an independent plan checker.

Why PyVRP: it is a state-of-the-art hybrid genetic search for VRPs that installs as a wheel,
and it takes a wall-clock stopping criterion, so the demo's routing step is bounded (2 s by
default) on a 2-core machine. OR-Tools would also do, but its routing layer is a much larger
dependency for the same answer on a 20-store instance.

Why a separate checker: a solver's own "feasible" flag is the claim under test, so
`check_plan` recomputes everything (visits, depot ends, loads, truck count, distances) from the
problem alone. The demo runs it on every plan a routing agent sells before accepting it.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass

from pyvrp import Model
from pyvrp.stop import MaxRuntime

logger = logging.getLogger(__name__)

DEPOT = "depot"
"""Name of the depot in a route's path; no store may use it as its id."""

_SCALE = 1000
"""PyVRP needs integer edge costs: distances go in as metres (km * 1000), rounded."""


class RoutingError(Exception):
    """Base of this module's errors.

    RoutingError
    ├── InfeasibleProblemError   the problem has no feasible plan (the caller's data)
    └── PlanViolationError       a given plan breaks a rule of the problem (the planner's bug)
    """


class InfeasibleProblemError(RoutingError, ValueError):
    """No plan can serve every store: demand exceeds what the trucks can carry."""


class PlanViolationError(RoutingError, ValueError):
    """A plan breaks a rule of its problem; the message names the rule, route and store."""


@dataclass(frozen=True, kw_only=True)
class RoutingProblem:
    """One day's deliveries: where the stores are, what they need, what trucks there are."""

    depot: tuple[float, float]
    """Depot coordinates in km."""
    stores: dict[str, tuple[float, float]]
    """Store coordinates in km by store id."""
    demand: dict[str, int]
    """Units to deliver per store id; the same ids as `stores`, each at least 1."""
    trucks: int
    """Trucks available; a plan may use fewer."""
    capacity: int
    """Units one truck carries."""

    def __post_init__(self) -> None:
        if self.trucks < 1:
            raise ValueError(f"RoutingProblem.trucks={self.trucks}: need at least 1 truck")
        if self.capacity < 1:
            raise ValueError(f"RoutingProblem.capacity={self.capacity}: must be at least 1")
        if self.stores.keys() != self.demand.keys():
            diff = sorted(self.stores.keys() ^ self.demand.keys())
            raise ValueError(f"RoutingProblem: stores and demand differ in ids {diff}")
        if DEPOT in self.stores:
            raise ValueError(f"RoutingProblem.stores: {DEPOT!r} is reserved for the depot")
        bad = {s: d for s, d in self.demand.items() if d < 1}
        if bad:
            raise ValueError(
                f"RoutingProblem.demand: {bad}; every store needs at least 1 unit "
                "(leave a store out to skip it)"
            )

    def position(self, node: str) -> tuple[float, float]:
        """Coordinates of a store id or of `DEPOT`."""
        return self.depot if node == DEPOT else self.stores[node]

    def distance(self, a: str, b: str) -> float:
        """Straight-line distance in km between two stores or a store and `DEPOT`."""
        return math.dist(self.position(a), self.position(b))


@dataclass(frozen=True, kw_only=True)
class Route:
    """One truck's tour."""

    path: tuple[str, ...]
    """Nodes in visiting order, `DEPOT` first and last, store ids between."""
    load: int
    """Units the truck carries out of the depot (the sum of its stores' demand)."""
    distance: float
    """Length of the tour in km."""

    @property
    def stores(self) -> tuple[str, ...]:
        """The store ids visited, without the depot ends."""
        return tuple(n for n in self.path if n != DEPOT)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A set of routes that together serve a problem's stores."""

    routes: tuple[Route, ...]
    """One route per truck used."""
    solve_seconds: float = 0.0
    """Wall time the solver took; 0 for a plan not made by `solve`."""

    @property
    def total_cost(self) -> float:
        """Total distance driven in km: the quantity the solver minimises."""
        return sum(r.distance for r in self.routes)

    def __repr__(self) -> str:
        return (
            f"<Plan routes={len(self.routes)} cost={self.total_cost:.1f} km "
            f"loads={[r.load for r in self.routes]} solve={self.solve_seconds:.2f}s>"
        )


def make_route(problem: RoutingProblem, stores: list[str]) -> Route:
    """Build a depot-to-depot route through `stores`, with its load and distance computed.

    Raises:
        KeyError: A store id is not in the problem.
    """
    path = (DEPOT, *stores, DEPOT)
    return Route(
        path=path,
        load=sum(problem.demand[s] for s in stores),
        distance=sum(problem.distance(a, b) for a, b in itertools.pairwise(path)),
    )


def _check_capacity(problem: RoutingProblem) -> None:
    total = sum(problem.demand.values())
    fleet = problem.trucks * problem.capacity
    if total > fleet:
        raise InfeasibleProblemError(
            f"total demand {total} units exceeds the fleet's capacity {fleet} "
            f"({problem.trucks} trucks x {problem.capacity}); add trucks, raise the capacity "
            "or split the delivery over two days"
        )
    too_big = {s: d for s, d in problem.demand.items() if d > problem.capacity}
    if too_big:
        raise InfeasibleProblemError(
            f"stores {too_big} each need more than one truck's capacity {problem.capacity}; "
            "split their delivery or use bigger trucks"
        )


def solve(problem: RoutingProblem, *, max_seconds: float = 2.0, seed: int = 0) -> Plan:
    """Plan routes that serve every store with the least total distance PyVRP finds in time.

    The search is a heuristic bounded by wall time, so the plan is good, not proven optimal;
    the same seed gives the same plan when the machine is fast enough to reach the same
    iteration count.

    Args:
        problem: Stores, demand and fleet.
        max_seconds: Wall-clock budget for the search.
        seed: Seed of PyVRP's random search.

    Returns:
        A plan that `check_plan` accepts.

    Raises:
        InfeasibleProblemError: Total demand exceeds the fleet's capacity, a single store
            needs more than a truck, or the search found no feasible plan in time.
    """
    _check_capacity(problem)
    ids = list(problem.stores)
    model = Model()
    depot_loc = model.add_location(*problem.depot, name=DEPOT)
    model.add_depot(depot_loc, name=DEPOT)
    locations = [depot_loc]
    names = [DEPOT]
    for store in ids:
        loc = model.add_location(*problem.stores[store], name=store)
        model.add_client(loc, delivery=[problem.demand[store]], name=store)
        locations.append(loc)
        names.append(store)
    model.add_vehicle_type(num_available=problem.trucks, capacity=[problem.capacity])
    for i, a in enumerate(locations):
        for j, b in enumerate(locations):
            metres = round(problem.distance(names[i], names[j]) * _SCALE)
            model.add_edge(a, b, distance=metres)

    started = time.perf_counter()
    result = model.solve(stop=MaxRuntime(max_seconds), seed=seed, display=False)
    elapsed = time.perf_counter() - started
    if not result.is_feasible():
        raise InfeasibleProblemError(
            f"no feasible plan found in {max_seconds} s for {len(ids)} stores and "
            f"{problem.trucks} trucks of {problem.capacity}; allow more time or trucks"
        )
    routes = tuple(
        # A route's activities are its depot ends and its clients; a client's `idx` is its
        # position among the model's clients, which is the order of `ids`.
        make_route(problem, [ids[act.idx] for act in route if act.is_client()])
        for route in result.best.routes()
    )
    plan = Plan(routes=routes, solve_seconds=elapsed)
    logger.info("routing: %r", plan)
    return plan


def check_plan(problem: RoutingProblem, plan: Plan) -> None:
    """Verify a plan against its problem without trusting whoever made it.

    Checks that the plan uses no more routes than trucks, that every route starts and ends at
    the depot and passes it nowhere else, that every store is visited exactly once and no
    unknown store at all, and that each route's load fits a truck and its stated load and
    distance match what the problem gives.

    Raises:
        PlanViolationError: The first violation found, naming the rule, route and store.
    """
    if len(plan.routes) > problem.trucks:
        raise PlanViolationError(
            f"plan uses {len(plan.routes)} routes but only {problem.trucks} trucks exist"
        )
    visits: Counter[str] = Counter()
    for n, route in enumerate(plan.routes):
        if len(route.path) < 2 or route.path[0] != DEPOT or route.path[-1] != DEPOT:
            raise PlanViolationError(
                f"route {n} {list(route.path)} does not start and end at the {DEPOT!r}"
            )
        if DEPOT in route.path[1:-1]:
            raise PlanViolationError(f"route {n} {list(route.path)} returns to the depot midway")
        unknown = [s for s in route.stores if s not in problem.stores]
        if unknown:
            raise PlanViolationError(f"route {n} visits unknown stores {unknown}")
        load = sum(problem.demand[s] for s in route.stores)
        if load > problem.capacity:
            raise PlanViolationError(
                f"route {n} carries {load} units, over the truck capacity {problem.capacity}"
            )
        if load != route.load:
            raise PlanViolationError(
                f"route {n} states load {route.load} but its stores need {load}"
            )
        distance = sum(problem.distance(a, b) for a, b in itertools.pairwise(route.path))
        if not math.isclose(distance, route.distance, rel_tol=1e-9, abs_tol=1e-6):
            raise PlanViolationError(
                f"route {n} states distance {route.distance:.3f} km but its path is "
                f"{distance:.3f} km"
            )
        visits.update(route.stores)
    twice = sorted(s for s, k in visits.items() if k > 1)
    if twice:
        raise PlanViolationError(f"stores visited more than once: {twice}")
    missed = sorted(set(problem.stores) - set(visits))
    if missed:
        raise PlanViolationError(f"stores never visited: {missed}")
