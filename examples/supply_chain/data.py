"""Deterministic synthetic data for the supply-chain demo: stores, coordinates, daily demand.

Why synthetic: the demo must run anywhere without a data set download, and the tests need a
series whose structure is known (weekly seasonality, linear trend, Gaussian noise) so that a
forecasting method that models that structure is expected to beat the seasonal-naive baseline.
The same seed always yields the same network, so figures quoted in docs can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERIOD = 7
"""Days in one season: demand repeats weekly."""


@dataclass(frozen=True, kw_only=True)
class Store:
    """One store the depot supplies."""

    id: str
    """Stable name, e.g. "S01"; forecasts and routes are keyed by it."""
    x: float
    """East-west position in km, depot at 0."""
    y: float
    """North-south position in km, depot at 0."""


@dataclass(frozen=True, kw_only=True)
class Network:
    """A depot at the origin, its stores, and each store's daily demand history."""

    depot: tuple[float, float]
    """Depot coordinates in km; always (0.0, 0.0) here."""
    stores: tuple[Store, ...]
    """The stores, in id order."""
    demand: dict[str, list[float]]
    """Units sold per day per store id, oldest first; every series has the same length."""

    @property
    def days(self) -> int:
        """Number of days in every demand series."""
        return len(next(iter(self.demand.values()))) if self.demand else 0


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Shape of the generated network; the defaults give the demo's 20-store case."""

    stores: int = 20
    """How many stores (at least 1)."""
    weeks: int = 12
    """Weeks of daily demand to generate (at least 3: two to fit a season, one to hold out)."""
    radius_km: float = 40.0
    """Stores lie uniformly in a disc of this radius around the depot."""
    base_level: tuple[float, float] = (40.0, 120.0)
    """Range of a store's mean daily demand at day 0, in units."""
    weekly_amplitude: float = 0.35
    """Weekly swing as a fraction of the base level (weekends busier than Mondays)."""
    trend_per_week: tuple[float, float] = (-0.01, 0.04)
    """Range of a store's growth per week, as a fraction of its base level."""
    noise: float = 0.06
    """Standard deviation of daily noise, as a fraction of the base level."""
    seed: int = 7
    """Seed of numpy's PCG64 generator; the same seed gives the same network."""

    def __post_init__(self) -> None:
        if self.stores < 1:
            raise ValueError(f"SyntheticConfig.stores={self.stores}: need at least 1 store")
        if self.weeks < 3:
            raise ValueError(
                f"SyntheticConfig.weeks={self.weeks}: need at least 3 weeks "
                "(two to fit a weekly season, one to hold out)"
            )
        if self.radius_km <= 0:
            raise ValueError(f"SyntheticConfig.radius_km={self.radius_km}: must be positive")
        if self.noise < 0:
            raise ValueError(f"SyntheticConfig.noise={self.noise}: must be non-negative")


# Day-of-week shape shared by all stores (Monday first): quiet early week, busy weekend. Each
# store scales and slightly perturbs it so series are related but not identical.
_WEEK_SHAPE = np.array([-0.8, -0.6, -0.3, 0.0, 0.4, 1.0, 0.3])


def generate(config: SyntheticConfig | None = None) -> Network:
    """Build a network of stores with daily demand = level + trend + weekly season + noise.

    Demand is clipped at zero and rounded to whole units, as sales are.

    Args:
        config: Shape of the network; `SyntheticConfig()` when omitted.

    Returns:
        The same `Network` for the same config, on any machine.
    """
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    days = cfg.weeks * PERIOD
    t = np.arange(days, dtype=float)

    # sqrt of a uniform radius gives points uniform over the disc's area, not crowded at the
    # centre.
    radius = cfg.radius_km * np.sqrt(rng.uniform(0.0, 1.0, cfg.stores))
    angle = rng.uniform(0.0, 2.0 * np.pi, cfg.stores)
    xs, ys = radius * np.cos(angle), radius * np.sin(angle)

    stores: list[Store] = []
    demand: dict[str, list[float]] = {}
    for i in range(cfg.stores):
        store_id = f"S{i + 1:02d}"
        base = rng.uniform(*cfg.base_level)
        growth = rng.uniform(*cfg.trend_per_week) * base / PERIOD
        shape = _WEEK_SHAPE + rng.normal(0.0, 0.1, PERIOD)
        season = cfg.weekly_amplitude * base * shape / np.abs(_WEEK_SHAPE).max()
        noise = rng.normal(0.0, cfg.noise * base, days)
        series = base + growth * t + season[(t % PERIOD).astype(int)] + noise
        stores.append(Store(id=store_id, x=float(round(xs[i], 3)), y=float(round(ys[i], 3))))
        demand[store_id] = [float(v) for v in np.round(np.clip(series, 0.0, None))]
    return Network(depot=(0.0, 0.0), stores=tuple(stores), demand=demand)


def split_holdout(
    demand: dict[str, list[float]], weeks: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Split the last `weeks` weeks off every series, to score forecasts on unseen days.

    Args:
        demand: Daily series per store.
        weeks: Whole weeks to hold out (at least 1).

    Returns:
        `(history, held_out)` with the same keys; `held_out` series are `7 * weeks` long.

    Raises:
        ValueError: `weeks` is below 1, or a series would keep fewer than two full weeks of
            history (too short to fit a weekly season).
    """
    if weeks < 1:
        raise ValueError(f"split_holdout(weeks={weeks}): hold out at least 1 week")
    cut = weeks * PERIOD
    history: dict[str, list[float]] = {}
    held_out: dict[str, list[float]] = {}
    for store, series in demand.items():
        if len(series) - cut < 2 * PERIOD:
            raise ValueError(
                f"split_holdout: store {store!r} has {len(series)} days; holding out {weeks} "
                f"week(s) leaves {len(series) - cut}, need at least {2 * PERIOD}"
            )
        history[store] = list(series[:-cut])
        held_out[store] = list(series[-cut:])
    return history, held_out
