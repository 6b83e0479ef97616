"""Probes score a seller's result from data only the validator keeps.

The forecast probe back-tests against held-out days of a seeded seasonal series; the chat
probe re-runs the prompt on the validator's own model, greedily.
"""

from __future__ import annotations

from typing import Any

from aaex_agents.llm import LLM, ModelInfo
from aaex_agents.llm.base import Completion, Request
from marketplace.trade.probes import SEASON, ChatProbe, ForecastProbe, Made


def seasonal_naive(task: dict[str, Any]) -> list[float]:
    """The last week of the history, repeated over the horizon."""
    history, horizon = task["history"], int(task.get("horizon", 1))
    last_week = history[-SEASON:]
    return [last_week[t % SEASON] for t in range(horizon)]


async def score_all(probe: ForecastProbe, answer: Any, n: int = 50) -> list[float]:
    out = []
    for k in range(n):
        made = probe.make(k.to_bytes(4, "big"))
        out.append(await probe.score(None, made, answer(k, made)))  # type: ignore[arg-type]
    return out


async def test_an_honest_forecaster_scores_high_and_one_wrong_a_fifth_of_the_time_lower() -> None:
    probe = ForecastProbe()
    honest = await score_all(probe, lambda k, made: {"forecast": seasonal_naive(made.task)})
    liar = await score_all(probe, lambda k, made: {"forecast": [
        3 * f if k % 5 == 4 else f for f in seasonal_naive(made.task)]})
    assert sum(honest) / len(honest) >= 0.9
    assert sum(liar) / len(liar) <= 0.8 * sum(honest) / len(honest)
    # the held-out week never reaches the seller
    made = probe.make(b"x")
    assert len(made.task["history"]) == probe.weeks * SEASON
    assert len(made.key[1]) == probe.horizon
    assert not set(made.key[1]) & set(made.task["history"])


async def test_a_forecaster_that_ignores_the_horizon_is_scored_on_its_one_number() -> None:
    probe = ForecastProbe()
    made = probe.make(b"single")
    first = made.key[1][0]
    assert await probe.score(None, made, {"forecast": first}) == 1.0  # type: ignore[arg-type]
    for bad in ({}, {"forecast": "high"}, {"forecast": []}, {"forecast": [float("nan")]},
                {"forecast": True}):
        assert await probe.score(None, made, bad) == 0.0  # type: ignore[arg-type]


class GreedyLLM(LLM):
    """A deterministic model: its greedy answer is a function of the prompt alone."""

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name="greedy", quantization="none", backend="test")

    async def generate(self, request: Request) -> Completion:
        return Completion(text=f"answer to {request.messages[-1]['content']}")

    def open_stream(self, request: Request):  # type: ignore[no-untyped-def]
        raise NotImplementedError


class LlmContext:
    llm = GreedyLLM()


async def test_the_chat_probe_reruns_the_prompt_and_compares_the_text() -> None:
    probe = ChatProbe()
    made: Made = probe.make(b"seed")
    assert made.task["temperature"] == 0.0
    ctx: Any = LlmContext()
    same = await GreedyLLM().generate(made.key)
    assert await probe.score(ctx, made, {"text": same.text + "\n"}) == 1.0
    assert await probe.score(ctx, made, {"text": "something else entirely"}) < 0.5
    assert await probe.score(ctx, made, {"text": 42}) == 0.0


