"""Figures for the supply-chain demo: forecasts per store, and the delivery plan as a map.

Why `Figure` and `FigureCanvasAgg` rather than pyplot: pyplot keeps global figure state and
picks a backend for the whole process, so an importer with its own backend (a notebook, a GUI)
would be switched or left with open figures. A bare `Figure` drawn by the Agg canvas writes a
PNG without touching either, works with no display, and is freed when it goes out of scope.

Sizes are fixed per panel and per map (see `PANEL_INCHES`, `MAP_INCHES`, `DPI`) rather than
trimmed to content, so a PNG's pixel size is known in advance: it depends only on the number of
stores, which keeps the figures stable between runs and checkable in tests.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .routing import Plan, RoutingProblem

DPI = 100
"""Pixels per inch of every PNG written here."""

PANEL_INCHES = (3.2, 2.4)
"""Width and height of one store's forecast panel; 20 stores make a 16 x 9.6 inch figure."""

MAP_INCHES = (10.0, 8.0)
"""Width and height of the route map, legend included."""

MAX_COLUMNS = 5
"""Most panels side by side in the forecast grid."""

# Matplotlib's default cycle without its grey, which is kept for stores no truck serves.
_ROUTE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                 "#e377c2", "#bcbd22", "#17becf")
_HISTORY, _FORECAST, _ACTUAL, _UNSERVED = "#333333", "#1f77b4", "#d62728", "#7f7f7f"


def grid(panels: int) -> tuple[int, int]:
    """Rows and columns of the forecast grid for `panels` stores: near square, at most 5 wide."""
    columns = max(1, min(MAX_COLUMNS, math.ceil(math.sqrt(panels))))
    return max(1, math.ceil(panels / columns)), columns


def route_color(k: int) -> str:
    """Hex colour of truck `k`'s route; colours repeat after nine trucks (see the legend)."""
    return _ROUTE_COLORS[k % len(_ROUTE_COLORS)]


def _short(name: str, limit: int = 20) -> str:
    # Providers may be long addresses; keep both ends, which is how people compare them.
    return name if len(name) <= limit else f"{name[: limit - 7]}…{name[-6:]}"


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    # print_png rather than savefig: savefig reads the savefig.* rcParams (dpi, bbox "tight"),
    # so an importer's settings could change the pixel size; print_png uses the figure's own.
    FigureCanvasAgg(figure).print_png(target)  # type: ignore[no-untyped-call]
    return target


def plot_forecasts(
    history: dict[str, list[float]],
    forecast: dict[str, list[float]],
    path: str | os.PathLike[str],
    *,
    actual: dict[str, list[float]] | None = None,
    provider_of: dict[str, str] | None = None,
    tail_days: int = 28,
) -> Path:
    """Draw one panel per store: recent demand, the forecast after it, and what really sold.

    Only the last `tail_days` of history are shown so the forecast is not squeezed against a
    long past; the forecast line starts at the last observed day so that it reads as a
    continuation. The x axis is the day index of the full history (shared by all panels); each
    panel keeps its own y scale, since stores differ several-fold in volume.

    Args:
        history: Daily demand per store id, oldest first; one panel per store, in this order.
        forecast: Predicted demand per store id for the days after its history.
        path: PNG file to write (its folder must exist); `grid(len(history))` panels of
            `PANEL_INCHES` at `DPI`.
        actual: Demand that really followed, per store id, drawn as points over the forecast;
            stores missing from it are drawn without.
        provider_of: Who made each store's forecast, shown in the panel title.
        tail_days: Days of history to show before the forecast (at least 1).

    Returns:
        The path written.

    Raises:
        ValueError: `history` is empty, `forecast` does not have the same stores, or
            `tail_days` is below 1.
    """
    if not history:
        raise ValueError("plot_forecasts: history is empty; pass at least one store's series")
    if forecast.keys() != history.keys():
        diff = sorted(forecast.keys() ^ history.keys())
        raise ValueError(
            f"plot_forecasts: history and forecast differ in stores {diff}; "
            "pass a forecast for exactly the stores in history"
        )
    if tail_days < 1:
        raise ValueError(f"plot_forecasts(tail_days={tail_days}): show at least 1 day")
    actual = actual or {}
    provider_of = provider_of or {}

    rows, columns = grid(len(history))
    figure = Figure(
        figsize=(PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained"
    )
    axes = list(figure.subplots(rows, columns, sharex=True, squeeze=False).flat)
    horizon = max(len(f) for f in forecast.values())
    for ax, (store, series) in zip(axes, history.items(), strict=False):
        start = max(0, len(series) - tail_days)
        ax.plot(range(start, len(series)), series[start:], color=_HISTORY, lw=1.2)
        if forecast[store] and series:
            days = range(len(series) - 1, len(series) + len(forecast[store]))
            ax.plot(days, [series[-1], *forecast[store]], color=_FORECAST, lw=1.5, ls="--")
        if actual.get(store):
            days = range(len(series), len(series) + len(actual[store]))
            ax.plot(days, actual[store], color=_ACTUAL, ls="none", marker=".", ms=4)
        ax.axvline(len(series) - 0.5, color="#bbbbbb", lw=0.8)
        provider = provider_of.get(store)
        ax.set_title(f"{store} · {_short(provider)}" if provider else store, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for n, ax in enumerate(axes[len(history):], start=len(history)):
        ax.set_visible(False)  # a leftover cell of the grid
        # Sharing x hid the day numbers of the panel above; it is now the bottom of its column.
        if n >= columns:
            axes[n - columns].tick_params(labelbottom=True)

    handles = [Line2D([], [], color=_HISTORY, lw=1.2, label="history"),
               Line2D([], [], color=_FORECAST, lw=1.5, ls="--", label="forecast")]
    if actual:
        handles.append(Line2D([], [], color=_ACTUAL, ls="none", marker=".", label="actual"))
    figure.legend(handles=handles, loc="outside upper right", ncols=len(handles), fontsize=8)
    figure.suptitle(
        f"Daily demand: last {tail_days} days and {horizon} days ahead, "
        f"{len(history)} stores"
    )
    figure.supxlabel("day", fontsize=9)
    figure.supylabel("units", fontsize=9)
    return _save(figure, path)


def plot_routes(
    problem: RoutingProblem,
    plan: Plan,
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Draw the plan as a map in km: the depot, every store, and each truck's tour in colour.

    Each store is labelled with its id and demand; a tour is a polyline from the depot through
    its stores and back, coloured by `route_color` and named in the legend with its load,
    the truck capacity and its length. A store no route visits stays a grey point, so a plan
    that misses one shows it. Axes have equal scale so distances look like distances.

    Args:
        problem: Positions, demand and truck capacity.
        plan: Routes to draw, truck `k` being `plan.routes[k]`.
        path: PNG file to write (its folder must exist); `MAP_INCHES` at `DPI`.
        title: Heading of the map; a summary of trucks and kilometres when empty.

    Returns:
        The path written.

    Raises:
        KeyError: A route visits a store the problem does not have.
    """
    figure = Figure(figsize=MAP_INCHES, dpi=DPI, layout="constrained")
    ax = figure.add_subplot()
    xs = [p[0] for p in problem.stores.values()]
    ys = [p[1] for p in problem.stores.values()]
    ax.scatter(xs, ys, s=30, color=_UNSERVED, zorder=2)
    for store, (x, y) in problem.stores.items():
        ax.annotate(f"{store} ({problem.demand[store]})", (x, y), xytext=(4, 4),
                    textcoords="offset points", fontsize=7, zorder=4)
    for k, route in enumerate(plan.routes):
        points = [problem.position(node) for node in route.path]
        ax.plot([p[0] for p in points], [p[1] for p in points], color=route_color(k), lw=2,
                marker="o", ms=6, zorder=3,
                label=f"truck {k + 1}: {route.load}/{problem.capacity}, {route.distance:.1f} km")
    ax.scatter([problem.depot[0]], [problem.depot[1]], s=140, marker="s", color="black",
               zorder=5, label="depot")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("y (km)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or f"Delivery plan: {len(plan.routes)} trucks, "
                          f"{plan.total_cost:.1f} km, {len(problem.stores)} stores")
    return _save(figure, path)
