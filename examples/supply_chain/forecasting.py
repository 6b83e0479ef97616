"""Demand forecasting: additive Holt-Winters, the seasonal-naive baseline, and MASE.

Why Holt-Winters: store demand here (and in most retail) is level + trend + a weekly pattern,
which is exactly the additive Holt-Winters model, so it is the simplest method that models
every component. The fit is statsmodels' `ExponentialSmoothing` (smoothing parameters and
initial states by maximum likelihood) rather than a hand-rolled grid search: it is a maintained,
tested implementation and installs from wheels beside the project.

Why MASE: it is scale-free, so stores selling 40 and 400 units a day can be averaged, and it is
scaled by the in-sample error of the seasonal-naive forecast, so MASE < 1 reads directly as
"better than repeating last week" (Hyndman & Koehler, 2006).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from .data import PERIOD

logger = logging.getLogger(__name__)


def _check_history(store: str, series: list[float]) -> None:
    # Holt-Winters' estimated initialisation needs two full seasons; say so by store rather
    # than letting statsmodels fail with a message about arrays.
    if len(series) < 2 * PERIOD:
        raise ValueError(
            f"store {store!r}: history has {len(series)} days; need at least {2 * PERIOD} "
            "(two full weeks) to fit a weekly season"
        )


def _check_horizon(horizon: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon={horizon}: forecast at least 1 day ahead")


def holt_winters(series: list[float], horizon: int) -> list[float]:
    """Forecast one series with additive trend and additive weekly seasonality.

    Negative predictions are clipped to 0: a store cannot sell fewer than zero units, and a
    downward trend extrapolated far enough would otherwise say so.

    Args:
        series: Daily demand, oldest first, at least two weeks.
        horizon: Days ahead to forecast (at least 1).

    Returns:
        `horizon` non-negative forecasts, the day after the series first.

    Raises:
        ValueError: The series is shorter than two weeks or the horizon is below 1.
    """
    # statsmodels takes a second to import: only a node that forecasts pays for it, not a
    # router or the planner, which import this module for `mase` and the data checks.
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    _check_horizon(horizon)
    _check_history("<series>", series)
    model = ExponentialSmoothing(
        np.asarray(series, dtype=float),
        trend="add",
        seasonal="add",
        seasonal_periods=PERIOD,
        initialization_method="estimated",
    )
    # The optimiser may stop at its iteration cap on flat or noisy series and warn; the
    # parameters it reached are still a valid fit, and the MASE tests check the result, so
    # the warning is noise for a caller. Other warnings pass through.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = model.fit(optimized=True)
    forecast = np.clip(np.asarray(fitted.forecast(horizon), dtype=float), 0.0, None)
    return [float(v) for v in forecast]


def seasonal_naive(series: list[float], horizon: int) -> list[float]:
    """Forecast by repeating the last observed week: the baseline any method must beat.

    Args:
        series: Daily demand, oldest first, at least one week.
        horizon: Days ahead to forecast (at least 1).

    Returns:
        `horizon` forecasts; day `k` ahead equals the same weekday of the last week.

    Raises:
        ValueError: The series is shorter than one week or the horizon is below 1.
    """
    _check_horizon(horizon)
    if len(series) < PERIOD:
        raise ValueError(f"seasonal_naive: need at least {PERIOD} days, got {len(series)}")
    last_week = series[-PERIOD:]
    return [float(last_week[k % PERIOD]) for k in range(horizon)]


def mase(history: list[float], actual: list[float], forecast: list[float]) -> float:
    """Mean absolute scaled error of `forecast` against `actual`.

    The scale is the in-sample mean absolute error of the seasonal-naive forecast on
    `history` (each day predicted by the same weekday one week earlier).

    Raises:
        ValueError: `actual` and `forecast` differ in length or are empty, the history is
            shorter than two weeks, or the history repeats exactly every week (the scale is
            zero and MASE undefined).
    """
    if len(actual) != len(forecast) or not actual:
        raise ValueError(
            f"mase: actual has {len(actual)} values and forecast {len(forecast)}; "
            "need the same non-zero length"
        )
    _check_history("<history>", history)
    h = np.asarray(history, dtype=float)
    scale = float(np.mean(np.abs(h[PERIOD:] - h[:-PERIOD])))
    if scale == 0.0:
        raise ValueError("mase: history repeats exactly every week, so the scale is 0")
    error = np.mean(np.abs(np.asarray(actual, dtype=float) - np.asarray(forecast, dtype=float)))
    return float(error / scale)


def forecast_stores(history: dict[str, list[float]], horizon: int) -> dict[str, list[float]]:
    """Holt-Winters forecasts for every store.

    Args:
        history: Daily demand per store id, oldest first, each at least two weeks.
        horizon: Days ahead to forecast (at least 1).

    Returns:
        The same store ids, each with `horizon` non-negative forecasts.

    Raises:
        ValueError: A series is shorter than two weeks (the message names the store), or the
            horizon is below 1.
    """
    _check_horizon(horizon)
    for store, series in history.items():
        _check_history(store, series)
    return {store: holt_winters(series, horizon) for store, series in history.items()}


@dataclass(frozen=True, kw_only=True)
class StoreScore:
    """Held-out accuracy of the method and of the baseline for one store."""

    method_mase: float
    """MASE of Holt-Winters; below 1 beats the in-sample seasonal-naive error."""
    naive_mase: float
    """MASE of seasonal naive on the same held-out days."""


@dataclass(frozen=True, kw_only=True)
class EvaluationReport:
    """Per-store and overall MASE of Holt-Winters against seasonal naive."""

    per_store: dict[str, StoreScore]
    """Scores by store id."""
    method_mase: float
    """Mean of the stores' Holt-Winters MASE."""
    naive_mase: float
    """Mean of the stores' seasonal-naive MASE."""

    @property
    def stores_won(self) -> int:
        """How many stores Holt-Winters forecasts better than seasonal naive."""
        return sum(s.method_mase < s.naive_mase for s in self.per_store.values())

    def __repr__(self) -> str:
        return (
            f"<EvaluationReport stores={len(self.per_store)} method_mase={self.method_mase:.3f}"
            f" naive_mase={self.naive_mase:.3f} won={self.stores_won}/{len(self.per_store)}>"
        )


def evaluate(history: dict[str, list[float]], held_out: dict[str, list[float]]) -> EvaluationReport:
    """Forecast the held-out days of every store and score both methods with MASE.

    Args:
        history: Daily demand per store used to fit, oldest first.
        held_out: The days that followed, per store; its length per store is the horizon.

    Returns:
        Per-store and mean MASE of Holt-Winters and seasonal naive.

    Raises:
        ValueError: The two dicts have different stores, a held-out series is empty, or a
            history is too short (the message names the store).
    """
    if history.keys() != held_out.keys():
        missing = sorted(history.keys() ^ held_out.keys())
        raise ValueError(f"evaluate: history and held_out differ in stores {missing}")
    per_store: dict[str, StoreScore] = {}
    for store, series in history.items():
        actual = held_out[store]
        if not actual:
            raise ValueError(f"evaluate: store {store!r} has no held-out days")
        _check_history(store, series)
        method = holt_winters(series, len(actual))
        naive = seasonal_naive(series, len(actual))
        per_store[store] = StoreScore(
            method_mase=mase(series, actual, method), naive_mase=mase(series, actual, naive)
        )
    report = EvaluationReport(
        per_store=per_store,
        method_mase=float(np.mean([s.method_mase for s in per_store.values()])),
        naive_mase=float(np.mean([s.naive_mase for s in per_store.values()])),
    )
    logger.info("forecast evaluation: %r", report)
    return report
