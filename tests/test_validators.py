"""Validators: probes score sellers from kept data, and Yuma turns the scores into incentive.

Real agents on the memory transport: sellers sell forecasts through the market, validators
buy probes from them with a `Delegator` (negotiate, sign, deliver, receipt), commit and
reveal weights on a `MemoryBoard` and compute `yuma_epoch`, epoch after epoch on a
`ManualClock`. One seller answers every fifth task wrongly from some epoch on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from aaex_agents import Agent, Context, Credits, MemoryNetwork, open_runtime
from aaex_agents.clock import ManualClock, SystemClock
from aaex_agents.errors import UsageError
from marketplace.consensus import ONE
from marketplace.consensus.board import ConsensusBook, EpochTimes, MemoryChain
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.policy import Wallet
from marketplace.trade.probes import ForecastProbe, Made
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import LINEAR, SellerStrategy
from marketplace.trade.validator import Validator
from tests.market_kit import agreement, identity, receipt
from tests.test_probes import seasonal_naive

CAPABILITY = "forecast.demand"


class SeriesTask(BaseModel):
    history: list[float] = Field(min_length=1)
    horizon: int = 1


class SeriesForecast(BaseModel):
    forecast: list[float]


class SeasonalForecaster(ServiceSeller):
    """Answers with the last week repeated; when `lying`, every fifth answer is off by 3x."""

    capability = CAPABILITY
    task_model: ClassVar[type[BaseModel]] = SeriesTask
    result_model: ClassVar[type[BaseModel]] = SeriesForecast

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lying = False
        self.served = 0

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        self.served += 1
        forecasts = seasonal_naive(task)
        if self.lying and self.served % 5 == 0:
            forecasts = [3 * f for f in forecasts]
        return {"forecast": forecasts}


def seller(name: str, clock: ManualClock, cost: int = 100_000) -> SeasonalForecaster:
    ident = identity(name)
    return SeasonalForecaster(ident, strategy=SellerStrategy(
        cost=Credits(cost), markup=1.0, exponent=LINEAR, latency_ms=300),
        countersign=seller_countersigner(ident, clock), clock=clock)


# -- validators over the market -----------------------------------------------------------

async def drive(clock: ManualClock, sleepers: int, steps: int) -> None:
    """Advance the clock to each next deadline once every validator waits on it."""
    for _ in range(steps):
        await asyncio.wait_for(clock.sleeping(sleepers), timeout=30)
        deadline = clock.next_deadline
        assert deadline is not None
        clock.advance(deadline - clock.now())


class Customer(Agent):
    """A buyer whose awards read the validators' consensus."""

    async def buy(self, ctx: Context, sellers: Sequence[ServiceSeller],
                  consensus: ConsensusBook, orders: int = 4) -> list[str]:
        async def every(capability: str, where: str | None) -> list[str]:
            return [s.address for s in sellers]

        budget = Credits(1_000_000)
        delegator = Delegator(self.identity, find=every, consensus=consensus,
                              wallet=Wallet(budget=budget * 100, per_seller=budget * 10,
                                            per_task=budget))
        winners = []
        for k in range(orders):
            task = ForecastProbe().make(f"customer {k}".encode()).task
            done = await delegator.delegate(ctx, CAPABILITY, task, budget=budget, deadline=60,
                                            top_k=4)
            winners.append(done.seller)
        return winners


def incentives(book: ConsensusBook, sellers: Sequence[ServiceSeller]) -> list[float]:
    standing = book.standing(CAPABILITY)
    assert standing is not None
    return [standing.incentive[s.address] / ONE for s in sellers]


async def test_a_seller_wrong_on_a_fifth_of_probes_loses_half_its_incentive_in_five_epochs(
        ) -> None:
    clock = ManualClock()
    times = EpochTimes(genesis=clock.now(), length=600, commit=240, reveal=120)
    chain = MemoryChain(clock, times)
    # the liar-to-be asks a little less, so it wins every award while all look equal
    sellers = [seller(f"forecaster {k}", clock, 90_000 if k == 0 else 100_000)
               for k in range(4)]
    liar = sellers[0]
    chain.registered[CAPABILITY] = [s.address for s in sellers]
    books = [ConsensusBook() for _ in range(3)]
    validators = [Validator(identity(f"validator {k}"), board=chain.account(f"account {k}"),
                            times=times,
                            probes_per_epoch=3, book=books[k], secret=bytes([k]) * 32)
                  for k in range(3)]
    for k in range(3):
        chain.staked[f"account {k}"] = 1_000_000
    per_epoch = 3  # each validator sleeps three times an epoch
    history: list[list[float]] = []
    customer = Customer()
    awards: list[list[str]] = []
    async with open_runtime([*sellers, *validators, customer],
                            transports=[MemoryNetwork().transport()], clock=clock) as runtime:
        for epoch in range(7):
            # to the reveal window, then past it: the epoch is computed
            await drive(clock, len(validators), per_epoch - 1)
            # every validator now waits for the next epoch: nothing is being probed
            await asyncio.wait_for(clock.sleeping(len(validators)), timeout=30)
            history.append(incentives(books[0], sellers))
            assert all(incentives(b, sellers) == history[-1] for b in books[1:])
            if epoch == 1:  # from epoch 2 on, every fifth answer is wrong
                awards.append(await customer.buy(runtime.context(customer), sellers, books[0]))
                liar.lying = True
            await drive(clock, len(validators), 1)
        awards.append(await customer.buy(runtime.context(customer), sellers, books[0]))
    baseline = history[1]
    after = history[2:]
    assert min(epoch[0] for epoch in after) <= 0.5 * baseline[0], history
    for k in range(1, 4):
        assert all(epoch[k] >= 0.9 * baseline[k] for epoch in after), history
    # every validator attested the same outputs, each epoch
    assert len(chain.attestations) == 7
    for (capability, _), digests in chain.attestations.items():
        assert capability == CAPABILITY and len(digests) == 3 and len(set(digests.values())) == 1
    # a customer whose awards read the consensus: the liar won all while it was honest
    # and cheapest, and wins none once the validators caught it
    assert awards[0] == [liar.address] * 4
    assert liar.address not in awards[1]


@pytest.mark.parametrize(("times", "settings", "named"), [
    ({"commit": 400, "reveal": 300}, {}, "EpochTimes"),
    ({"commit": 0}, {}, "EpochTimes"),
    ({}, {"capabilities": ["translate.text"]}, "no probe for"),
    ({}, {"probes_per_epoch": 0}, "probes_per_epoch"),
])
def test_bad_validator_settings_are_refused_by_name(times: dict[str, float],
                                                    settings: dict[str, Any], named: str) -> None:
    clock = ManualClock()
    with pytest.raises(UsageError, match=named):
        Validator(identity("v"), board=MemoryChain(clock, EpochTimes()).account("v"),
                  times=EpochTimes(genesis=0, length=600, **times), **settings)


def test_receipts_it_is_shown_lower_a_seller_that_fails_its_buyers() -> None:
    """Probes alike, the seller whose settled receipts say it never delivered weighs less."""
    clock = ManualClock()
    validator = Validator(identity("validator"),
                          board=MemoryChain(clock, EpochTimes()).account("validator"),
                          times=EpochTimes(), sharpness=1.0)
    late, punctual = identity("late seller"), identity("punctual seller")
    pairs = []
    for k in range(3):
        buyer = identity(f"buyer {k}")
        for n, seller_ in enumerate((late, punctual)):
            signed = agreement(buyer, seller_, n=10 * k + n)
            pairs.append((signed, receipt(signed, buyer,
                                          latency_ms=None if seller_ is late else 200)))
    assert validator.shown(pairs) == 6
    row = validator.weights_row(CAPABILITY, [late.address, punctual.address],
                                {late.address: [1.0], punctual.address: [1.0]})
    assert row == (0, 65_535)


class BrokenOnceProbe(ForecastProbe):
    """Fault injection: the first score raises, as a bug in a probe would."""

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "calls", 0)

    async def score(self, ctx: Context, made: Made, result: Any) -> float:
        object.__setattr__(self, "calls", self.calls + 1)  # type: ignore[has-type]
        if self.calls == 1:  # type: ignore[has-type]
            raise RuntimeError("a bug in the probe")
        return await super().score(ctx, made, result)


async def test_an_epoch_that_fails_is_skipped_and_the_next_one_runs() -> None:
    clock = ManualClock()
    times = EpochTimes(genesis=clock.now(), length=600, commit=240, reveal=120)
    chain = MemoryChain(clock, times)
    forecaster = seller("forecaster", clock)
    chain.registered[CAPABILITY] = [forecaster.address]
    chain.staked["v"] = 1
    validator = Validator(identity("validator"), board=chain.account("v"), times=times,
                          probes={CAPABILITY: BrokenOnceProbe()}, probes_per_epoch=1)
    async with open_runtime([forecaster, validator], transports=[MemoryNetwork().transport()],
                            clock=clock):
        await drive(clock, 1, 1)   # epoch 0 failed: straight to sleeping until epoch 1
        assert validator.last_epoch is None and (CAPABILITY, 0) not in chain.commitments
        await drive(clock, 1, 3)   # epoch 1: reveal opens, closes, next epoch
    assert validator.last_epoch == 1
    assert chain.counted[(CAPABILITY, 1)] == {"v": {forecaster.address: 65_535}}


@pytest.mark.parametrize(("probe_latency_ms", "scores"), [(30_000, [0.0]), (45_000, [1.0])])
async def test_a_validator_probes_a_seller_as_slow_as_its_customers_accept(
        probe_latency_ms: float, scores: list[float]) -> None:
    """A seller promising 40 s is out of a default (30 s) probe's reach, scoring 0 however
    good it is; a validator told what the capability's customers accept reaches it."""
    clock = SystemClock()
    ident = identity("slow router")
    slow = SeasonalForecaster(ident, strategy=SellerStrategy(
        cost=Credits(100_000), markup=1.0, exponent=LINEAR, latency_ms=40_000),
        countersign=seller_countersigner(ident, clock), clock=clock)
    validator = Validator(identity("patient validator"), probes_per_epoch=1,
                          probe_latency_ms=probe_latency_ms,
                          board=MemoryChain(clock, EpochTimes()).account("v"))
    async with open_runtime([slow, validator], transports=[MemoryNetwork().transport()],
                            clock=clock) as runtime:
        got = await validator.probe_seller(runtime.context(validator), CAPABILITY,
                                           slow.address)
    assert got == scores
