"""The ``route.vrp`` probe: its planted optimum is the optimum, and plans are scored from the
coordinates, feasibility first."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aaex_agents import Identity
from aaex_agents.clock import ManualClock
from marketplace.consensus.board import EpochTimes, MemoryChain
from marketplace.trade.route_probe import RouteKey, RouteProbe, plan_length
from marketplace.trade.validator import Validator

PROBE = RouteProbe()
SEEDS = [bytes([n]) * 8 for n in range(40)]


def planted(key: RouteKey) -> dict[str, Any]:
    """Each ray served whole, out to its farthest store and back: the optimum by design."""
    routes = []
    for far in (s for s in key.stores if 2 * key.demand[s] > key.capacity):
        angle = math.atan2(key.stores[far][1], key.stores[far][0])
        ray = [s for s in key.stores
               if abs(math.remainder(math.atan2(key.stores[s][1], key.stores[s][0]) - angle,
                                     2 * math.pi)) < 1e-3]
        routes.append({"path": ["depot", *sorted(ray, key=lambda s: math.hypot(
            *key.stores[s])), "depot"]})
    return {"routes": routes}


async def score(made: Any, result: dict[str, Any]) -> float:
    return await PROBE.score(None, made, result)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", SEEDS[:10])
async def test_the_planted_plan_is_feasible_and_scores_one(seed: bytes) -> None:
    made = PROBE.make(seed)
    key: RouteKey = made.key
    assert sum(key.demand.values()) == key.trucks * key.capacity
    plan = planted(key)
    assert len(plan["routes"]) == key.trucks
    assert plan_length(key, plan) == pytest.approx(key.optimum, rel=1e-4)
    assert await score(made, plan) == pytest.approx(1.0, abs=1e-3)
    assert made.task["trucks"] == key.trucks and set(made.task["stores"]) == set(key.stores)


async def test_no_solver_beats_the_planted_optimum_and_a_good_one_reaches_it() -> None:
    """PyVRP (the demo's router) on the same instances: never shorter than the planted
    optimum (it is a lower bound), and it finds it (the probe is fair to a good router)."""
    pytest.importorskip("pyvrp", reason="pyvrp comes with the demo extra")
    from aaex_examples.supply_chain import routing

    for seed in SEEDS[:15]:
        made = PROBE.make(seed)
        key: RouteKey = made.key
        problem = routing.RoutingProblem(depot=key.depot, stores=dict(key.stores),
                                         demand=dict(key.demand), trucks=key.trucks,
                                         capacity=key.capacity)
        plan = routing.solve(problem, max_seconds=0.5)
        answer = {"routes": [{"path": list(r.path)} for r in plan.routes]}
        length = plan_length(key, answer)
        assert length is not None and length >= key.optimum * (1 - 1e-6), seed
        assert await score(made, answer) >= 0.99, (seed, length, key.optimum)


async def test_a_longer_plan_scores_less_and_ten_percent_longer_scores_zero() -> None:
    made = PROBE.make(SEEDS[3])
    key: RouteKey = made.key
    plan = planted(key)
    first = plan["routes"][0]["path"]
    inner = first[1:-1]
    if len(inner) >= 3:  # visit the farthest store first, then come back in: a detour
        detour = {"routes": [{"path": ["depot", inner[-1], *inner[:-1], "depot"]},
                             *plan["routes"][1:]]}
        length = plan_length(key, detour)
        assert length is not None and length > key.optimum
        assert await score(made, detour) < 1.0
    # scored against an optimum 10% below the plan's length: zero
    stretched = RouteKey(key.depot, key.stores, key.demand, key.trucks, key.capacity,
                         key.optimum / 1.1)
    assert await PROBE.score(None, type(made)(made.task, stretched), plan) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("spoil", ["missing", "twice", "unknown", "over_capacity",
                                   "too_many_routes", "not_a_list", "bad_path"])
async def test_an_infeasible_or_malformed_plan_scores_zero(spoil: str) -> None:
    made = PROBE.make(SEEDS[5])
    key: RouteKey = made.key
    routes = planted(key)["routes"]
    first = routes[0]["path"]
    if spoil == "missing":
        routes[0] = {"path": [first[0], *first[2:]]}
    elif spoil == "twice":
        routes[1] = {"path": [routes[1]["path"][0], first[1], *routes[1]["path"][1:]]}
    elif spoil == "unknown":
        routes[0] = {"path": [*first[:-1], "S99", "depot"]}
    elif spoil == "over_capacity":  # two rays' farthest stores on one truck
        routes = [{"path": ["depot", *first[1:-1], *routes[1]["path"][1:-1], "depot"]},
                  *routes[2:], {"path": []}]
    elif spoil == "too_many_routes":
        routes = [*routes, {"path": []}]
    elif spoil == "bad_path":
        routes[0] = {"path": "S01 S02"}
    result: dict[str, Any] = {"routes": "none"} if spoil == "not_a_list" else {"routes": routes}
    assert plan_length(key, result) is None
    assert await score(made, result) == 0.0


def test_a_validator_takes_route_vrp_probes() -> None:
    clock = ManualClock()
    validator = Validator(Identity.generate(), board=MemoryChain(clock, EpochTimes()).account(
        "v"), capabilities=["route.vrp"])
    assert isinstance(validator.probes["route.vrp"], RouteProbe)
