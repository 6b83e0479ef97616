"""Supply-chain figures: PNGs of the promised size that really show the forecasts and routes.

Needs the `demo` extra (`pip install -e ".[demo]"`); without it the whole module is skipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

for _module in ("numpy", "statsmodels", "pyvrp", "matplotlib"):
    pytest.importorskip(
        _module, reason=f"{_module} comes with the demo extra: pip install '.[demo]'"
    )

import numpy as np  # noqa: E402
from matplotlib import colors, image  # noqa: E402

from aaex_examples.supply_chain import data, forecasting, plots, routing  # noqa: E402

STORES = 6


@pytest.fixture(scope="module")
def network() -> data.Network:
    return data.generate(data.SyntheticConfig(stores=STORES, weeks=4))


@pytest.fixture(scope="module")
def split(network: data.Network) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    return data.split_holdout(network.demand, 1)


@pytest.fixture(scope="module")
def forecast(
    split: tuple[dict[str, list[float]], dict[str, list[float]]],
) -> dict[str, list[float]]:
    return forecasting.forecast_stores(split[0], 7)


@pytest.fixture(scope="module")
def problem(network: data.Network, forecast: dict[str, list[float]]) -> routing.RoutingProblem:
    demand = {store: max(1, math.ceil(f[0])) for store, f in forecast.items()}
    return routing.RoutingProblem(
        depot=network.depot,
        stores={s.id: (s.x, s.y) for s in network.stores},
        demand=demand,
        trucks=2,
        # Room for one truck short of everything: the plan needs both trucks.
        capacity=math.ceil(sum(demand.values()) * 0.6),
    )


@pytest.fixture(scope="module")
def plan(problem: routing.RoutingProblem) -> routing.Plan:
    return routing.solve(problem, max_seconds=0.2)


def _pixels_of(png: np.ndarray, hex_color: str, tolerance: float = 0.02) -> int:
    target = np.array(colors.to_rgb(hex_color))
    return int(np.all(np.abs(png[..., :3] - target) <= tolerance, axis=-1).sum())


def _size(inches: tuple[float, float]) -> tuple[int, int]:
    return round(inches[1] * plots.DPI), round(inches[0] * plots.DPI)


def test_forecast_png_has_one_panel_per_store_at_the_set_size(
    tmp_path: Path,
    split: tuple[dict[str, list[float]], dict[str, list[float]]],
    forecast: dict[str, list[float]],
) -> None:
    history, held_out = split
    providers = {store: "0x" + "ab" * 20 for store in history}
    path = plots.plot_forecasts(history, forecast, tmp_path / "forecast.png", actual=held_out,
                                provider_of=providers, tail_days=14)
    assert path == tmp_path / "forecast.png"
    png = image.imread(path)
    rows, columns = plots.grid(STORES)
    assert (rows, columns) == (2, 3)
    height, width = _size((plots.PANEL_INCHES[0] * columns, plots.PANEL_INCHES[1] * rows))
    assert png.shape == (height, width, 4)
    # Every panel draws its dashed forecast line in the forecast colour.
    assert _pixels_of(png, "#1f77b4") > 100 * STORES


def test_forecast_grid_is_near_square_and_at_most_five_wide() -> None:
    assert [plots.grid(n) for n in (1, 2, 4, 5, 20, 23)] == [
        (1, 1), (1, 2), (2, 2), (2, 3), (4, 5), (5, 5)]


def test_forecast_needs_the_same_stores_as_history(
    tmp_path: Path, split: tuple[dict[str, list[float]], dict[str, list[float]]],
) -> None:
    history, _ = split
    with pytest.raises(ValueError, match=r"differ in stores \['S01'\]"):
        plots.plot_forecasts(history, {s: [1.0] for s in history if s != "S01"},
                             tmp_path / "x.png")


def test_route_map_draws_every_route_in_its_colour(
    tmp_path: Path, problem: routing.RoutingProblem, plan: routing.Plan
) -> None:
    assert len(plan.routes) == 2
    path = plots.plot_routes(problem, plan, tmp_path / "routes.png", title="Tomorrow")
    png = image.imread(path)
    assert png.shape == (*_size(plots.MAP_INCHES), 4)
    for k in range(len(plan.routes)):
        # Far more than the legend's short sample line: the tour itself is drawn.
        assert _pixels_of(png, plots.route_color(k)) > 400, k


def test_route_colours_come_only_from_routes(
    tmp_path: Path, problem: routing.RoutingProblem
) -> None:
    png = image.imread(plots.plot_routes(problem, routing.Plan(routes=()), tmp_path / "e.png"))
    assert png.shape == (*_size(plots.MAP_INCHES), 4)
    assert all(_pixels_of(png, plots.route_color(k)) == 0 for k in range(2))
