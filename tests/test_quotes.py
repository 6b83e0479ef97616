"""Standing quotes: a seller stands by the last offer of a lost negotiation, and no more.

The buyer that awarded another seller may come back (its winner failed) naming the earlier
dialogue: the seller answers with the price it last bid there, for the same task, and never
asks more in that dialogue. Another buyer naming the dialogue, another task, a quote taken
once already, or one past `HOLD_S` gets the seller's ordinary opening instead; a buyer's
quotes are bounded, so no buyer crowds out another's.
"""

from __future__ import annotations

import time

from aaex_agents.testing import ManualClock
from marketplace.trade.negotiation import CounterOffer, Propose
from marketplace.trade.quotes import HOLD_S, PER_BUYER, StandingQuotes
from marketplace.trade.strategies import BOULWARE, Offer
from tests.market_kit import cr
from tests.test_negotiation import Buyer, cfp, market, seller

OFFER = Offer(price=cr(2.5), latency_ms=400, deadline_s=60, penalty=cr(0.25))


async def test_a_seller_stands_by_its_last_offer_when_the_buyer_comes_back_for_it() -> None:
    buyer, other = Buyer(), Buyer()
    clock = ManualClock(time.time())
    target = seller(2.0, BOULWARE, clock=clock)
    async with market(buyer, other, target) as runtime:
        ctx = runtime.context(buyer)
        first = cfp(respond_by=clock.now() + 10)
        opening = await ctx.ask(target.address, first)
        assert isinstance(opening, Propose)
        clock.advance(9)  # late in the window: the seller has conceded
        last = await ctx.ask(target.address, CounterOffer(dialogue=first.dialogue, round=1,
                                                          price=cr(0.1)))
        assert isinstance(last, Propose) and last.price < opening.price
        clock.advance(5)  # the buyer awarded another seller; the window closed

        # Another buyer naming the dialogue gets the ordinary opening: it is not its own.
        stranger = await runtime.context(other).ask(target.address, cfp(
            respond_by=clock.now() + 10, hold=first.dialogue))
        assert isinstance(stranger, Propose) and stranger.price == opening.price
        other_task = await ctx.ask(target.address, cfp(
            respond_by=clock.now() + 10, hold=first.dialogue, task={"stores": 3, "weeks": 1}))
        assert isinstance(other_task, Propose) and other_task.price == opening.price

        back = cfp(respond_by=clock.now() + 10, hold=first.dialogue)
        held = await ctx.ask(target.address, back)  # the quote was taken by the other task:
        assert isinstance(held, Propose) and held.price == opening.price  # once only


async def test_the_held_price_is_a_ceiling_for_the_whole_dialogue() -> None:
    buyer = Buyer()
    clock = ManualClock(time.time())
    target = seller(2.0, BOULWARE, clock=clock)
    async with market(buyer, target) as runtime:
        ctx = runtime.context(buyer)
        first = cfp(respond_by=clock.now() + 10)
        opening = await ctx.ask(target.address, first)
        clock.advance(9)
        last = await ctx.ask(target.address, CounterOffer(dialogue=first.dialogue, round=1,
                                                          price=cr(0.1)))
        assert isinstance(opening, Propose) and isinstance(last, Propose)
        clock.advance(5)
        back = cfp(respond_by=clock.now() + 10, hold=first.dialogue)
        held = await ctx.ask(target.address, back)
        assert isinstance(held, Propose) and held.price == last.price < opening.price
        again = await ctx.ask(target.address, CounterOffer(dialogue=back.dialogue, round=1,
                                                           price=cr(0.1)))
        assert isinstance(again, Propose) and again.price == last.price  # the curve is higher


def test_quotes_are_one_shot_task_bound_expiring_and_bounded_per_buyer() -> None:
    quotes = StandingQuotes()
    quotes.keep("b", "d1", OFFER, "task", now=0)
    assert quotes.take("b", "d1", "other task", now=1) is None
    assert quotes.take("b", "d1", "task", now=1) is None  # a refused try used it up
    quotes.keep("b", "d2", OFFER, "task", now=0)
    assert quotes.take("b", "d2", "task", now=HOLD_S + 1) is None  # expired
    for n in range(PER_BUYER + 5):
        quotes.keep("flood", f"d{n}", OFFER, "task", now=0)
    quotes.keep("b", "d3", OFFER, "task", now=0)
    assert len(quotes) == PER_BUYER + 1  # the flooding buyer kept its own share only
    assert quotes.take("flood", "d0", "task", now=1) is None  # its oldest gave way
    assert quotes.take("flood", f"d{PER_BUYER + 4}", "task", now=1) == OFFER
    assert quotes.take("b", "d3", "task", now=1) == OFFER


async def test_a_withdrawn_dialogue_keeps_no_quote() -> None:
    """An A2A quote ends its dialogue by `withdraw` once answered: nothing of it is kept."""
    buyer = Buyer()
    clock = ManualClock(time.time())
    target = seller(2.0, BOULWARE, clock=clock)
    async with market(buyer, target) as runtime:
        first = cfp(respond_by=clock.now() + 10)
        assert isinstance(await runtime.context(buyer).ask(target.address, first), Propose)
        assert target.withdraw(buyer.address, first.dialogue)
    assert len(target.quotes) == 0
