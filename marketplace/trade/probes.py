"""Probes: tasks a validator buys like any buyer, scored against data only it keeps.

A `Probe` makes a task for its capability and keeps the answer key to itself; once the
seller's signed result comes back through the market, the probe scores it in [0, 1]. The
task looks like any customer's (same shape, same market path), so a seller cannot answer
probes well and customers badly without telling them apart by content (docs/consensus.md,
"Validators", says where that limit lies).

    forecast.demand   `ForecastProbe`: a seeded seasonal series; the validator keeps the
                      held-out weeks and scores MASE against seasonal-naive
    llm.chat          `ChatProbe`: the prompt is re-run on the validator's own model with
                      greedy decoding; the answer must match the seller's text
    route.vrp         `RouteProbe` (route_probe.py): an instance with a planted optimum; the
                      plan is checked and its length recomputed
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from aaex_agents import Context
from aaex_agents.llm.base import Request

from .llm_seller import chat_request


@dataclass(frozen=True)
class Made:
    """A probe task and the key that scores it; the key never leaves the validator."""

    task: dict[str, Any]
    """What is sent to the seller, shaped as a customer's task."""
    key: Any
    """What only the validator knows (held-out values, the prompt to re-run)."""


@runtime_checkable
class Probe(Protocol):
    """A capability's probe: make a task, score the seller's result from the kept key."""

    @property
    def capability(self) -> str:
        """The capability whose sellers this probe tests."""
        ...

    def make(self, seed: bytes) -> Made:
        """A fresh task from `seed` (the validator's secret and a counter)."""
        ...

    async def score(self, ctx: Context, made: Made, result: Mapping[str, Any]) -> float:
        """The result's quality in [0, 1]; 0 for a result of the wrong shape."""
        ...


SEASON = 7
"""Days in a week: the series are daily with a weekly season."""


@dataclass(frozen=True)
class ForecastProbe:
    """``forecast.demand``: back-test a forecast against held-out weeks of a seeded series.

    The task is ``{"history": [...], "horizon": h}`` (a forecaster that ignores the horizon
    still answers it: its single ``forecast`` is scored against the first held-out day). The
    result is ``{"forecast": x}`` or ``{"forecast": [x_1, ...]}`` (or ``"forecasts"``).

    Score: MASE, the mean absolute error over the days answered divided by the in-sample
    mean absolute error of the seasonal-naive forecast (``y[t - 7]``), mapped to
    ``clip(3 - MASE, 0, 1)``. Seasonal-naive itself has a MASE under 2 on 99% of these
    series (median 1.0), so any honest forecaster at least that good scores 1; an answer
    three times worse than seasonal-naive's usual error scores 0.
    """

    capability: str = "forecast.demand"
    weeks: int = 6
    """Weeks of history sent."""
    horizon: int = SEASON
    """Held-out days the validator keeps."""

    def make(self, seed: bytes) -> Made:
        """A series and its held-out weeks; the held-out days' noise has its own generator.

        Seeded generators make a probe reproducible from the validator's secret (which the
        seller never sees); the held-out noise is drawn from a stream no value of the
        history came from, so the history reveals nothing of it beyond the season.
        """
        tag = hashlib.sha256(b"aaex.probe.forecast/1" + seed).digest()
        rng = random.Random(tag)  # noqa: S311 - a reproducible series, not a secret
        later = random.Random(hashlib.sha256(tag + b"held-out").digest())  # noqa: S311
        level = rng.uniform(50, 150)
        amplitude = rng.uniform(0.1, 0.4) * level
        trend = rng.uniform(-0.2, 0.2)
        pattern = [amplitude * rng.uniform(-1, 1) for _ in range(SEASON)]
        cut = self.weeks * SEASON
        series = [round(level + trend * t + pattern[t % SEASON]
                        + (rng if t < cut else later).gauss(0, 0.05 * level), 2)
                  for t in range(cut + self.horizon)]
        return Made({"history": series[:cut], "horizon": self.horizon},
                    (tuple(series[:cut]), tuple(series[cut:])))

    async def score(self, ctx: Context, made: Made, result: Mapping[str, Any]) -> float:
        """1 for a forecast as good as seasonal-naive usually is, falling to 0 (see above)."""
        history, held_out = made.key
        answered = _forecasts(result)
        if not answered:
            return 0.0
        days = min(len(answered), len(held_out))
        error = sum(abs(f - a) for f, a in zip(answered, held_out, strict=False)) / days
        naive = [abs(history[t] - history[t - SEASON]) for t in range(SEASON, len(history))]
        scale = max(sum(naive) / len(naive), 1e-9)
        return float(min(1.0, max(0.0, 3 - error / scale)))


def _forecasts(result: Mapping[str, Any]) -> list[float]:
    """The numbers a forecaster answered, in order; empty if there are none usable."""
    value = result.get("forecasts", result.get("forecast"))
    values: Sequence[Any] = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                             and v == v and abs(v) != float("inf") for v in values):
        return []
    return [float(v) for v in values]


PROMPTS = (
    "Name the capital of {country} in one word.",
    "Spell the number {n} in English words.",
    "Reverse the letters of the word '{word}'.",
    "What is {a} plus {b}? Answer with the number only.",
)
COUNTRIES = ("France", "Japan", "Kenya", "Peru", "Norway", "Canada", "Egypt", "India")
WORDS = ("market", "seller", "ledger", "window", "forecast", "receipt", "stake", "bond")


@dataclass(frozen=True)
class ChatProbe:
    """``llm.chat``: the prompt is re-run on the validator's own model, decoded greedily.

    Greedy decoding (temperature 0) is deterministic for a given model and engine, so a
    seller that ran the model it advertises gives the very text the validator's model
    gives; anything else (a smaller model, a cache of wrong answers) differs. Score: 1 for
    the same text after trimming whitespace, else the share of the validator's words the
    answer has in the same places (a partial credit for a tokenizer-level difference).
    """

    capability: str = "llm.chat"
    max_tokens: int = 32

    def make(self, seed: bytes) -> Made:
        """A short factual prompt drawn from `seed`, at temperature 0."""
        rng = random.Random(  # noqa: S311 - a reproducible prompt, not a secret
            hashlib.sha256(b"aaex.probe.chat/1" + seed).digest())
        prompt = rng.choice(PROMPTS).format(
            country=rng.choice(COUNTRIES), n=rng.randrange(10, 10_000),
            word=rng.choice(WORDS), a=rng.randrange(100), b=rng.randrange(100))
        task = {"messages": [{"role": "user", "content": prompt}],
                "max_tokens": self.max_tokens, "temperature": 0.0}
        return Made(task, chat_request(task, cap=self.max_tokens))

    async def score(self, ctx: Context, made: Made, result: Mapping[str, Any]) -> float:
        """How far the answer matches `ctx.llm`'s own greedy answer (see above)."""
        text = result.get("text")
        if not isinstance(text, str):
            return 0.0
        request: Request = made.key
        expected = (await ctx.llm.generate(request)).text  # our model failing: no score
        return _text_match(expected, text)


def _text_match(expected: str, answered: str) -> float:
    if expected.strip() == answered.strip():
        return 1.0
    want, got = expected.split(), answered.split()
    if not want:
        return 0.0
    return sum(1 for w, g in zip(want, got, strict=False) if w == g) / max(len(want), len(got))
