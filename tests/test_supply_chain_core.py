"""Compute core of the supply-chain demo: forecasting beats seasonal naive, VRP plans hold.

Needs the `demo` extra (`pip install -e ".[demo]"`); without it the whole module is skipped.
"""

from __future__ import annotations

import math

import pytest

for _module in ("numpy", "statsmodels", "pyvrp"):
    pytest.importorskip(
        _module, reason=f"{_module} comes with the demo extra: pip install '.[demo]'"
    )

from aaex_examples.supply_chain import data, forecasting, routing  # noqa: E402

HOLDOUT_WEEKS = 2


@pytest.fixture(scope="module")
def network() -> data.Network:
    return data.generate()


@pytest.fixture(scope="module")
def split(network: data.Network) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    return data.split_holdout(network.demand, HOLDOUT_WEEKS)


@pytest.fixture(scope="module")
def problem(network: data.Network) -> routing.RoutingProblem:
    history, _ = data.split_holdout(network.demand, HOLDOUT_WEEKS)
    tomorrow = forecasting.forecast_stores(history, 1)
    demand = {store: max(1, math.ceil(f[0])) for store, f in tomorrow.items()}
    # 15% slack over an even three-way split: tight enough that capacity shapes the routes.
    capacity = math.ceil(sum(demand.values()) / 3 * 1.15)
    return routing.RoutingProblem(
        depot=network.depot,
        stores={s.id: (s.x, s.y) for s in network.stores},
        demand=demand,
        trucks=3,
        capacity=capacity,
    )


@pytest.fixture(scope="module")
def plan(problem: routing.RoutingProblem) -> routing.Plan:
    return routing.solve(problem, max_seconds=2.0)


# --- data --------------------------------------------------------------------------------


def test_generator_is_deterministic_and_seeded(network: data.Network) -> None:
    assert data.generate() == network
    assert data.generate(data.SyntheticConfig(seed=8)).demand != network.demand
    assert len(network.stores) == 20
    assert network.days == 12 * 7
    assert all(v >= 0 for series in network.demand.values() for v in series)


def test_split_holdout_keeps_the_last_weeks(network: data.Network) -> None:
    history, held_out = data.split_holdout(network.demand, HOLDOUT_WEEKS)
    for store, series in network.demand.items():
        assert len(held_out[store]) == 14
        assert history[store] + held_out[store] == series
    with pytest.raises(ValueError, match="need at least 14"):
        data.split_holdout(network.demand, 11)


# --- forecasting -------------------------------------------------------------------------


def test_holt_winters_beats_seasonal_naive_on_held_out_weeks(
    split: tuple[dict[str, list[float]], dict[str, list[float]]],
) -> None:
    report = forecasting.evaluate(*split)
    assert set(report.per_store) == set(split[0])
    assert report.method_mase < report.naive_mase
    assert report.method_mase < 1.0
    # Not won on average by a few stores alone: most stores are better forecast.
    assert report.stores_won >= 15, report


def test_forecasts_have_the_horizon_and_are_non_negative(
    split: tuple[dict[str, list[float]], dict[str, list[float]]],
) -> None:
    history, _ = split
    forecasts = forecasting.forecast_stores(history, 10)
    assert forecasts.keys() == history.keys()
    assert all(len(f) == 10 and min(f) >= 0.0 for f in forecasts.values())


def test_forecast_is_clipped_at_zero_on_a_falling_series() -> None:
    week = [10.0, 8.0, 6.0, 9.0, 12.0, 15.0, 11.0]
    falling = [max(0.0, v + 60.0 - 3.0 * t) for t, v in enumerate(week * 3)]
    forecast = forecasting.holt_winters(falling, 21)
    assert len(forecast) == 21
    assert min(forecast) == 0.0


def test_mase_of_the_seasonal_naive_in_sample_is_one() -> None:
    series = [float(v) for v in (3, 5, 2, 8, 6, 1, 4, 4, 6, 2, 9, 5, 1, 3, 5, 7, 1, 8, 6, 2, 4)]
    history, actual = series[:14], series[14:]
    # Scale = in-sample mean |y_t - y_{t-7}| = 5/7; a forecast off by 5/7 everywhere has MASE 1.
    assert forecasting.mase(history, actual, [a + 5 / 7 for a in actual]) == pytest.approx(1.0)
    assert forecasting.seasonal_naive(history, 9) == history[7:] + history[7:9]


def test_short_history_is_rejected_by_store() -> None:
    with pytest.raises(ValueError, match=r"store 'S99'.*13 days"):
        forecasting.forecast_stores({"S99": [1.0] * 13}, 7)


# --- routing -----------------------------------------------------------------------------


def test_plan_for_20_stores_and_3_trucks_is_feasible(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    routing.check_plan(problem, plan)
    assert 1 <= len(plan.routes) <= 3
    assert sorted(s for r in plan.routes for s in r.stores) == sorted(problem.stores)
    assert all(r.load <= problem.capacity for r in plan.routes)
    assert plan.total_cost == pytest.approx(sum(r.distance for r in plan.routes))
    assert plan.solve_seconds < 5.0


def test_plan_is_shorter_than_visiting_stores_in_id_order(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    # A naive split of the id-ordered stores into capacity-sized runs: any real solver
    # should beat it by a wide margin on random points.
    runs: list[list[str]] = [[]]
    for store in sorted(problem.stores):
        if sum(problem.demand[s] for s in runs[-1]) + problem.demand[store] > problem.capacity:
            runs.append([])
        runs[-1].append(store)
    naive = sum(routing.make_route(problem, run).distance for run in runs)
    assert plan.total_cost < 0.8 * naive


def test_check_plan_catches_a_dropped_store(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    first = plan.routes[0]
    dropped = first.stores[0]
    shorter = routing.make_route(problem, list(first.stores[1:]))
    broken = routing.Plan(routes=(shorter, *plan.routes[1:]))
    with pytest.raises(routing.PlanViolationError, match=f"never visited: \\['{dropped}'\\]"):
        routing.check_plan(problem, broken)


def test_check_plan_catches_a_store_visited_twice(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    # Move no load: visit a store of route 1 again on route 0 while keeping the rest.
    again = plan.routes[1].stores[0]
    big = routing.RoutingProblem(
        depot=problem.depot,
        stores=problem.stores,
        demand=problem.demand,
        trucks=problem.trucks,
        capacity=sum(problem.demand.values()),
    )
    doubled = routing.make_route(big, [*plan.routes[0].stores, again])
    broken = routing.Plan(routes=(doubled, *plan.routes[1:]))
    with pytest.raises(routing.PlanViolationError, match=f"more than once: \\['{again}'\\]"):
        routing.check_plan(big, broken)


def test_check_plan_catches_an_overloaded_truck(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    merged = routing.make_route(problem, [s for r in plan.routes[:2] for s in r.stores])
    broken = routing.Plan(routes=(merged, *plan.routes[2:]))
    with pytest.raises(routing.PlanViolationError, match="over the truck capacity"):
        routing.check_plan(problem, broken)


def test_check_plan_catches_too_many_routes_and_missing_depot(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    singles = tuple(routing.make_route(problem, [s]) for s in problem.stores)
    with pytest.raises(routing.PlanViolationError, match="20 routes but only 3 trucks"):
        routing.check_plan(problem, routing.Plan(routes=singles))
    first = plan.routes[0]
    open_ended = routing.Route(path=first.path[:-1], load=first.load, distance=first.distance)
    with pytest.raises(routing.PlanViolationError, match="start and end at the 'depot'"):
        routing.check_plan(problem, routing.Plan(routes=(open_ended, *plan.routes[1:])))


def test_check_plan_catches_a_misstated_load(
    problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    first = plan.routes[0]
    lying = routing.Route(path=first.path, load=first.load - 1, distance=first.distance)
    with pytest.raises(routing.PlanViolationError, match="states load"):
        routing.check_plan(problem, routing.Plan(routes=(lying, *plan.routes[1:])))


def test_demand_above_fleet_capacity_is_a_clear_error(problem: routing.RoutingProblem) -> None:
    total = sum(problem.demand.values())
    small = routing.RoutingProblem(
        depot=problem.depot,
        stores=problem.stores,
        demand=problem.demand,
        trucks=3,
        capacity=total // 3 - 1,
    )
    with pytest.raises(routing.InfeasibleProblemError, match=f"total demand {total} units exceeds"):
        routing.solve(small, max_seconds=0.5)


def test_a_store_bigger_than_a_truck_is_a_clear_error() -> None:
    problem = routing.RoutingProblem(
        depot=(0.0, 0.0),
        stores={"A": (1.0, 0.0), "B": (0.0, 1.0)},
        demand={"A": 12, "B": 1},
        trucks=3,
        capacity=10,
    )
    with pytest.raises(routing.InfeasibleProblemError, match="'A': 12"):
        routing.solve(problem, max_seconds=0.5)


def test_problem_rejects_mismatched_ids() -> None:
    with pytest.raises(ValueError, match=r"differ in ids \['B'\]"):
        routing.RoutingProblem(
            depot=(0.0, 0.0),
            stores={"A": (1.0, 0.0), "B": (2.0, 0.0)},
            demand={"A": 1},
            trucks=1,
            capacity=5,
        )
