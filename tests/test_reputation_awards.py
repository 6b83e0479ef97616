"""Reputation steers awards: a badly rated seller does not win by being somewhat cheaper.

The bound of `BuyerUtility` is checked as a property on the utility itself and through the
award path (discovery order, shortlist, negotiation, award, delivery) with reputation from
a `ReputationBook` fed real signed receipts; newcomers are judged at face value and always
get a place in the shortlist.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaex_agents import Agent, Context, Credits, Identity, MemoryNetwork, Services, open_runtime
from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO
from marketplace.contracts.reputation import NEUTRAL, ReputationBook, Score
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegated, Delegator, shortlist
from marketplace.trade.market import MarketSettings, NodeMarket
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import LINEAR, BuyerUtility, Offer, SellerStrategy, Weights
from tests.market_kit import agreement, cr, identity, receipt

CAPABILITY = "forecast.demand"
LOW, HIGH = 0.2, 0.8


# -- the utility -------------------------------------------------------------------------

MICRO = 1_000_000
limits = st.tuples(st.integers(10_000, 10**4 * MICRO), st.floats(1, 1e6), st.floats(0.1, 1e5),
                   st.integers(0, 100 * MICRO))
"""(max price, max latency, max deadline, wanted penalty); amounts in micro-credits."""


def offer(price: float, latency: float, deadline: float, penalty: float = 0) -> Offer:
    """An offer whose amounts are written in credits (exact for these tests' decimals)."""
    return Offer(cr(price), latency, deadline, cr(penalty))


@settings(max_examples=2_000, deadline=None)
@given(limits=limits, data=st.data())
def test_a_low_rated_seller_never_beats_a_high_rated_one_at_up_to_twice_its_price(
        limits: tuple[int, float, float, int], data: st.DataObject) -> None:
    max_price, max_latency, max_deadline, wanted_penalty = limits
    utility = BuyerUtility(max_price=Credits(max_price), max_latency_ms=max_latency,
                           max_deadline_s=max_deadline, wanted_penalty=Credits(wanted_penalty))
    cheap = data.draw(st.integers(0, max_price), label="cheap price")
    dear = data.draw(st.integers(cheap, min(2 * cheap, max_price)), label="dear price")
    low = data.draw(st.floats(0, LOW), label="low rating")
    high = data.draw(st.floats(HIGH, 1), label="high rating")
    latency = data.draw(st.floats(0, max_latency), label="latency")
    deadline = data.draw(st.floats(0, max_deadline), label="deadline")
    penalty = Credits(data.draw(st.integers(0, 200 * MICRO), label="penalty"))
    low_offer = Offer(Credits(cheap), latency, deadline, penalty)
    high_offer = Offer(Credits(dear), latency, deadline, penalty)
    assert utility.of(high_offer, high) > utility.of(low_offer, low)


@settings(max_examples=500, deadline=None)
@given(limits=limits, data=st.data())
def test_an_unrated_seller_is_judged_exactly_as_before_reputation_counted(
        limits: tuple[int, float, float, int], data: st.DataObject) -> None:
    """At the neutral score the utility is the old weighted sum (so the bench is unchanged)."""
    max_price, max_latency, max_deadline, wanted_penalty = limits
    utility = BuyerUtility(max_price=Credits(max_price), max_latency_ms=max_latency,
                           max_deadline_s=max_deadline, wanted_penalty=Credits(wanted_penalty))
    bid = Offer(Credits(data.draw(st.integers(0, max_price))),
                data.draw(st.floats(0, max_latency)), data.draw(st.floats(0, max_deadline)),
                Credits(data.draw(st.integers(0, 200 * MICRO))))
    insured = 1.0 if wanted_penalty <= 0 else min(1.0, bid.penalty.micro / wanted_penalty)
    before = (0.5 * (1 - bid.price.micro / max_price)
              + 0.2 * (1 - bid.latency_ms / max_latency)
              + 0.1 * (1 - bid.deadline_s / max_deadline) + 0.1 * insured + 0.1 * NEUTRAL)
    assert utility.of(bid, NEUTRAL) == pytest.approx(before, abs=1e-12)
    target = data.draw(st.floats(0, 1), label="target")
    price = utility.price_for(target, bid, NEUTRAL)
    old_price = max(0.0, min(max_price, (utility.of(Offer(ZERO, bid.latency_ms,
                                                          bid.deadline_s, bid.penalty))
                                         - target) / (0.5 / max_price)))
    assert price.micro == pytest.approx(old_price, abs=1)  # rounded down to the micro-credit


@settings(max_examples=500, deadline=None)
@given(rating=st.floats(0, 1), target=st.floats(0, 1), price=st.integers(10_000, 10 * MICRO),
       latency=st.floats(0, 1000))
def test_the_counter_price_reaches_the_target_utility(rating: float, target: float,
                                                      price: int, latency: float) -> None:
    utility = BuyerUtility(max_price=cr(10), max_latency_ms=1000, max_deadline_s=60)
    counter = utility.price_for(target, Offer(Credits(price), latency, 30, ZERO), rating)
    assert ZERO <= counter <= cr(10)
    if counter > ZERO:  # a target out of reach even for free asks for 0
        assert utility.of(Offer(counter, latency, 30, ZERO), rating) >= target - 1e-9
    if counter < cr(10):  # and the counter is the highest price that reaches it
        assert utility.of(Offer(counter + Credits(1_000), latency, 30, ZERO),
                          rating) <= target + 1e-9


def test_the_finding_a_seller_rated_zero_loses_to_one_rated_one_at_half_as_much_again() -> None:
    utility = BuyerUtility(max_price=cr(10), max_latency_ms=1000, max_deadline_s=60)
    assert utility.of(offer(6.0, 300, 30), 1.0) > utility.of(offer(4.0, 300, 30), 0.0)
    # with no reputation exponent and no reputation weight, price alone decides again
    blind = BuyerUtility(max_price=cr(10), max_latency_ms=1000, max_deadline_s=60,
                         weights=Weights(reputation=0.0, reputation_exponent=0.0))
    assert blind.of(offer(6.0, 300, 30), 1.0) < blind.of(offer(4.0, 300, 30), 0.0)


def test_a_seller_rated_zero_still_has_a_price() -> None:
    """The trust floor: one rater's failure does not price a seller out for good."""
    utility = BuyerUtility(max_price=cr(10), max_latency_ms=1000, max_deadline_s=60)
    assert Weights().trust(0.0) == Weights().trust(0.1) == pytest.approx(0.2)
    # it beats a seller rated 1.0 at the buyer's limit when it asks a twentieth of that
    assert utility.of(offer(0.5, 300, 30), 0.0) > utility.of(offer(10.0, 300, 30), 1.0)
    assert utility.of(offer(2.0, 300, 30), 0.0) < utility.of(offer(10.0, 300, 30), 1.0)


@pytest.mark.parametrize(("changes", "named"), [
    ({"price": -0.1}, "Weights.price"),
    ({"latency": math.nan}, "Weights.latency"),
    ({"reputation": math.inf}, "Weights.reputation"),
    ({"price": 0, "latency": 0, "deadline": 0, "penalty": 0, "reputation": 0}, "sum"),
    ({"reputation_exponent": -1}, "Weights.reputation_exponent"),
    ({"reputation_exponent": 11}, "Weights.reputation_exponent"),
])
def test_bad_weights_are_refused_by_name(changes: dict[str, float], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        Weights(**changes)


# -- the shortlist -----------------------------------------------------------------------

def test_the_shortlist_keeps_one_place_for_a_newcomer() -> None:
    scores = {"a": Score(1.0, 3, 9), "b": Score(0.9, 3, 9), "c": Score(0.8, 2, 4),
              "new": Score(NEUTRAL, 0, 0), "bad": Score(0.0, 3, 3), "newer": Score(NEUTRAL, 0, 0)}
    found = ["bad", "new", "c", "b", "newer", "a"]
    assert shortlist(found, scores, 3) == ["a", "b", "new"]
    assert shortlist(found, scores, 4) == ["a", "b", "c", "new"]
    assert shortlist(found, scores, 1) == ["a"]  # a single place goes to the best
    rated = {k: v for k, v in scores.items() if v.raters}
    assert shortlist(["bad", "c", "b", "a"], rated, 3) == ["a", "b", "c"]
    assert shortlist(["bad", "new"], scores, 3) == ["new", "bad"]


# -- the award path ----------------------------------------------------------------------

class Worker(ServiceSeller):
    capability = CAPABILITY

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        return {"done": task["n"]}


class Planner(Agent):
    pass


def worker(name: str, cost: float) -> Worker:
    """A seller whose price is fixed at cost * 1.1 (no markup, so no concession)."""
    ident = identity(name)
    return Worker(ident, strategy=SellerStrategy(cost=Credits.from_float(cost, rounding="down"),
                                                 markup=1.0, exponent=LINEAR,
                                                 latency_ms=300),
                  countersign=seller_countersigner(ident))


def rate(book: ReputationBook, seller: Identity, met_out_of_five: list[int], tag: str) -> None:
    """Feed `book` real signed agreements and receipts: rater k saw `met[k]` of 5 met."""
    for k, met in enumerate(met_out_of_five):
        rater = identity(f"{tag} rater {k}")
        for i in range(5):
            signed = agreement(rater, seller, n=i, max_latency_ms=1_000)
            book.add_agreement(signed)
            book.add_receipt(receipt(signed, rater, latency_ms=200 if i < met else None))


async def award(sellers: list[Worker], book: ReputationBook, budget: Credits,
                top_k: int = 3) -> Delegated:
    planner = Planner()

    async def find(capability: str, where: str | None) -> list[str]:
        return [s.address for s in sellers]  # the finder puts the cheap one first

    delegator = Delegator(planner.identity, find=find, reputation=book,
                          wallet=Wallet(budget=budget * 100, per_seller=budget * 10,
                                        per_task=budget), negotiation_window=0.5)
    async with open_runtime([planner, *sellers],
                            transports=[MemoryNetwork().transport()]) as runtime:
        return await delegator.delegate(runtime.context(planner), CAPABILITY, {"n": 1},
                                        budget=budget, deadline=20, max_latency_ms=500,
                                        top_k=top_k)


@settings(max_examples=25, deadline=None)
@given(budget=st.floats(1, 50), cheap_share=st.floats(0.01, 0.45),
       ratio=st.floats(1, 2), raters=st.integers(3, 5), data=st.data())
def test_the_high_rated_dearer_seller_wins_a_real_negotiation(
        budget: float, cheap_share: float, ratio: float, raters: int,
        data: st.DataObject) -> None:
    cheap_cost = cheap_share * budget / 1.1
    dear_cost = min(cheap_cost * ratio, budget / 1.1)
    low_votes = data.draw(st.lists(st.integers(0, 1), min_size=raters, max_size=raters))
    high_votes = data.draw(st.lists(st.integers(4, 5), min_size=raters, max_size=raters))
    cheap, dear = worker("cheap low-rated", cheap_cost), worker("dear high-rated", dear_cost)
    book = ReputationBook()
    rate(book, cheap.identity, low_votes, "low")
    rate(book, dear.identity, high_votes, "high")
    assert book.score(cheap.address).score <= LOW and book.score(dear.address).score >= HIGH
    done = asyncio.run(award([cheap, dear], book, Credits.from_float(budget, rounding="down")))
    assert done.seller == dear.address
    assert done.price.micro <= budget * MICRO and done.price.micro <= 2 * cheap_cost * 1.1e6 + 2


async def test_a_newcomer_wins_over_a_low_rated_seller_even_somewhat_dearer() -> None:
    low, newcomer = worker("low", 2.0), worker("newcomer", 3.0)
    book = ReputationBook()
    rate(book, low.identity, [0, 1, 0], "low")
    done = await award([low, newcomer], book, budget=cr(10))
    assert done.seller == newcomer.address


@pytest.mark.parametrize(("newcomer_cost", "newcomer_wins"), [(0.5, True), (3.0, False)])
async def test_a_newcomer_beats_established_good_sellers_only_when_much_cheaper(
        newcomer_cost: float, newcomer_wins: bool) -> None:
    """The rule with the defaults: against sellers rated 1.0 at price p, a newcomer wins
    below p / 2 - 0.1 * budget (here 4.4 / 2 - 1 = 1.2): 0.55 wins, 3.3 does not. It is
    always asked to bid, though three rated sellers fill the three places by score."""
    good = [worker(f"good {k}", 4.0) for k in range(3)]
    newcomer = worker("newcomer", newcomer_cost)
    book = ReputationBook()
    for k, seller in enumerate(good):
        rate(book, seller.identity, [5, 5, 5], f"good {k}")
    done = await award([newcomer, *good], book, budget=cr(10))
    assert (done.seller == newcomer.address) is newcomer_wins


async def test_market_settings_reach_every_delegator_and_its_awards() -> None:
    settings_ = MarketSettings(price_weight=0.6, reputation_weight=0.0,
                               reputation_exponent=0.0, negotiation_window=0.5)
    planner = Planner()
    market = NodeMarket({planner.address: planner}, find=_find_nothing, ledger=None,
                        settings=settings_)
    weights = market.for_agent(planner.address).weights
    assert weights == Weights(price=0.6, latency=0.2, deadline=0.1, penalty=0.1,
                              reputation=0.0, reputation_exponent=0.0)
    assert NodeMarket({}, find=_find_nothing, ledger=None).settings.weights() == Weights()

    # With reputation switched off in the settings, the cheap low-rated seller wins again.
    for node_settings, cheap_wins in [(settings_, True), (MarketSettings(), False)]:
        cheap, dear = worker("cheap", 2.0), worker("dear", 3.0)

        async def find(capability: str, where: str | None) -> list[str]:
            return [cheap.address, dear.address]  # noqa: B023 - used within the iteration

        market = NodeMarket({planner.address: planner}, find=find, ledger=None,
                            settings=node_settings)
        rate(market.reputation, cheap.identity, [0, 0, 0], "cheap")
        rate(market.reputation, dear.identity, [5, 5, 5], "dear")
        async with open_runtime([planner, cheap, dear], transports=[MemoryNetwork().transport()],
                                services=Services(market=market)) as runtime:
            done = await runtime.context(planner).delegate(CAPABILITY, {"n": 1}, budget=cr(10),
                                                           deadline=20, max_latency_ms=500)
        assert done.seller == (cheap if cheap_wins else dear).address


async def _find_nothing(capability: str, where: str | None) -> list[str]:
    return []


@pytest.mark.parametrize(("changes", "named"), [
    ({"price_weight": -1}, "market.price_weight"),
    ({"reputation_exponent": 20}, "market.reputation_exponent"),
    ({"price_weight": 0, "latency_weight": 0, "deadline_weight": 0, "penalty_weight": 0,
      "reputation_weight": 0}, "market.*_weight"),
])
def test_bad_market_weights_are_named(changes: dict[str, float], named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("*", r"\*")):
        MarketSettings(**changes)


def test_the_weights_are_read_from_a_node_config() -> None:
    """`[market]` carries the weights through the generic reader, and names a bad one."""
    from pathlib import Path

    from marketplace.node.config import ConfigError, parse_config

    node = {"identity": "n.key"}
    parsed = parse_config({"node": node, "market": {"price_weight": 0.4, "deadline_weight": 0,
                                                     "reputation_exponent": 2}},
                          base=Path("."))
    assert parsed.market.weights() == Weights(price=0.4, deadline=0.0, reputation_exponent=2.0)
    with pytest.raises(ConfigError, match=r"market\.reputation_weight"):
        parse_config({"node": node, "market": {"reputation_weight": -1}}, base=Path("."))
