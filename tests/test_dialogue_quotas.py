"""A seller's open negotiations under quotas: how far ahead, how many per buyer and in total,
and whose give way when the table is full (marketplace.trade.dialogues), between real agents
on the memory network. The flood over a real transport against an `aaex node run` seller is
tests/test_dialogue_flood.py."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aaex_agents import Agent, Identity, MemoryNetwork, open_runtime
from aaex_agents.errors import UsageError
from aaex_agents.runtime import Runtime
from aaex_agents.testing import ManualClock
from marketplace.trade.contracting import buyer_signer, seller_countersigner
from marketplace.trade.dialogues import DialogueLimits
from marketplace.trade.negotiation import (
    Accept,
    Agreed,
    CallForProposals,
    CounterOffer,
    Decline,
    Propose,
    Seller,
    new_dialogue_id,
)
from marketplace.trade.strategies import LINEAR, Offer, SellerStrategy
from tests.market_kit import cr

START = 1_750_000_000.0  # the sellers' clock (envelopes keep the system's)


class Forecaster(Seller):
    capability = "forecast.demand"


class Buyer(Agent):
    pass


def forecaster(limits: DialogueLimits, clock: ManualClock) -> Forecaster:
    identity = Identity.generate()
    return Forecaster(identity, strategy=SellerStrategy(cost=cr(2.0), exponent=LINEAR,
                                                        latency_ms=400),
                      countersign=seller_countersigner(identity, clock), limits=limits,
                      clock=clock)


def call(clock: ManualClock, *, ahead: float = 30.0, **changes: Any) -> CallForProposals:
    fields: dict[str, Any] = dict(
        dialogue=new_dialogue_id(), capability="forecast.demand", task={"weeks": 1},
        max_price=cr(10.0), max_latency_ms=1000, max_deadline_s=120,
        respond_by=clock.now() + ahead)
    fields.update(changes)
    return CallForProposals(**fields)


@asynccontextmanager
async def market(seller: Seller, buyers: int) -> AsyncIterator[tuple[Runtime, list[Buyer]]]:
    keys = [Buyer() for _ in range(buyers)]
    network = MemoryNetwork()
    async with open_runtime([seller, *keys], transports=[network.transport()]) as runtime:
        yield runtime, keys


async def ask(runtime: Runtime, buyer: Agent, seller: Seller, message: Any) -> Any:
    return await runtime.context(buyer).ask(seller.address, message, timeout=10)


async def accept(runtime: Runtime, buyer: Agent, seller: Seller, cfp: CallForProposals,
                 offer: Propose, clock: ManualClock) -> Any:
    """Sign the agreement for `offer` and ask the seller to countersign it."""
    agreement = buyer_signer(buyer.identity, clock)(
        cfp.dialogue, seller.address, cfp,
        Offer(offer.price, offer.latency_ms, offer.deadline_s, offer.penalty))
    return await ask(runtime, buyer, seller, Accept(dialogue=cfp.dialogue, round=offer.round,
                                                    agreement=agreement))


def reason(reply: Any) -> str:
    return reply.reason if isinstance(reply, Decline) else type(reply).__name__


@pytest.mark.parametrize("respond_by", [1e12, math.inf, math.nan, START + 61])
async def test_a_call_may_end_at_most_max_window_ahead(respond_by: float) -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_window=60), clock)
    async with market(seller, 1) as (runtime, [buyer]):
        reply = await ask(runtime, buyer, seller, call(clock, respond_by=respond_by))
        assert reason(reply) == "respond_by_too_far"
        assert "at most 60 s ahead" in reply.detail
        assert len(seller.open) == 0 and not seller.dialogues
        assert isinstance(await ask(runtime, buyer, seller, call(clock, ahead=60)), Propose)


async def test_one_buyer_holds_at_most_its_quota_and_others_are_not_charged() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=10, max_per_buyer=2), clock)
    async with market(seller, 2) as (runtime, [greedy, other]):
        calls = [call(clock) for _ in range(3)]
        replies = [await ask(runtime, greedy, seller, c) for c in calls]
        assert [reason(r) for r in replies] == ["Propose", "Propose", "too_many_dialogues"]
        assert isinstance(await ask(runtime, other, seller, call(clock)), Propose)
        # An agreement ends a negotiation: its place in the quota is free again.
        assert isinstance(await accept(runtime, greedy, seller, calls[0], replies[0], clock),
                          Agreed)
        assert isinstance(await ask(runtime, greedy, seller, call(clock)), Propose)


async def test_when_full_the_buyer_holding_most_gives_way_to_a_newcomer() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=6, max_per_buyer=3), clock)
    async with market(seller, 3) as (runtime, [first, second, newcomer]):
        flood = [(key, call(clock)) for key in (first, second) for _ in range(3)]
        for key, c in flood:
            assert isinstance(await ask(runtime, key, seller, c), Propose)
        assert len(seller.open) == 6
        cfp = call(clock)
        offer = await ask(runtime, newcomer, seller, cfp)
        assert isinstance(offer, Propose)
        # The first of the two heaviest holders lost its oldest dialogue, and only that one.
        oldest = flood[0][1]
        assert seller.dialogue(first.address, oldest.dialogue) is None
        assert reason(await ask(runtime, first, seller, CounterOffer(
            dialogue=oldest.dialogue, round=1, price=cr(1)))) == "unknown_dialogue"
        assert all(seller.dialogue(key.address, c.dialogue) is not None for key, c in flood[1:])
        assert isinstance(await accept(runtime, newcomer, seller, cfp, offer, clock), Agreed)


async def test_a_newcomer_that_would_hold_the_most_is_refused_busy() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=4, max_per_buyer=4), clock)
    async with market(seller, 5) as (runtime, keys):
        for key in keys[:4]:  # four strangers holding one each
            assert isinstance(await ask(runtime, key, seller, call(clock)), Propose)
        # A fifth takes the oldest place: it would hold no more than anyone.
        assert isinstance(await ask(runtime, keys[4], seller, call(clock)), Propose)
        assert seller.open.held_by(keys[0].address) == 0
        # But a second dialogue would make it hold more than everyone else.
        refused = await ask(runtime, keys[4], seller, call(clock))
        assert reason(refused) == "busy"
        assert [seller.open.held_by(k.address) for k in keys] == [0, 1, 1, 1, 1]


async def test_a_flood_of_long_windows_gives_way_to_a_buyer_of_short_ones() -> None:
    """What a buyer holds is slots times the seconds it asked for: four keys holding one
    60 s dialogue each give way to a stranger asking for 5 s at a time, thrice over."""
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=4, max_per_buyer=4), clock)
    async with market(seller, 5) as (runtime, [*flood, honest]):
        for key in flood:
            assert isinstance(await ask(runtime, key, seller, call(clock, ahead=60)), Propose)
        replies = [await ask(runtime, honest, seller, call(clock, ahead=5)) for _ in range(3)]
        assert [reason(r) for r in replies] == ["Propose"] * 3
        assert [seller.open.held_by(k.address) for k in flood] == [0, 0, 0, 1]
        # Its fourth would reserve 20 slot-seconds, no more than the last flood key's 60:
        # that one gives way too; a fifth would go past the buyer's quota.
        assert isinstance(await ask(runtime, honest, seller, call(clock, ahead=5)), Propose)
        assert reason(await ask(runtime, honest, seller, call(clock, ahead=5))) == \
            "too_many_dialogues"


async def test_a_call_many_slots_big_cannot_push_out_small_ones() -> None:
    clock = ManualClock(START)
    limits = DialogueLimits(max_open=4, max_per_buyer=4, max_open_bytes=4 * 4096)
    seller = forecaster(limits, clock)
    async with market(seller, 5) as (runtime, keys):
        for key in keys[:4]:
            assert isinstance(await ask(runtime, key, seller, call(clock)), Propose)
        big = call(clock, task={"text": "x" * 6000})  # three slots of 4,096 bytes
        assert reason(await ask(runtime, keys[4], seller, big)) == "busy"
        assert [seller.open.held_by(k.address) for k in keys[:4]] == [1, 1, 1, 1]
        huge = call(clock, task={"text": "x" * 20_000})  # more than the whole table
        assert reason(await ask(runtime, keys[4], seller, huge)) == "task_too_large"


async def test_strangers_never_displace_a_buyer_with_standing() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=4, max_per_buyer=2), clock)
    async with market(seller, 12) as (runtime, [regular, *strangers]):
        seller.regulars.add(regular.address)  # as a receipt that paid this seller does
        cfp = call(clock)
        offer = await ask(runtime, regular, seller, cfp)  # the oldest dialogue of all
        assert isinstance(offer, Propose)
        for key in strangers:  # each stranger takes the oldest stranger's place
            assert isinstance(await ask(runtime, key, seller, call(clock)), Propose)
        assert seller.open.held_by(regular.address) == 1
        assert isinstance(await accept(runtime, regular, seller, cfp, offer, clock), Agreed)
        # A buyer with standing also finds room in a table full of strangers.
        for key in strangers[-3:]:
            assert isinstance(await ask(runtime, key, seller, call(clock)), Propose)
        assert isinstance(await ask(runtime, regular, seller, call(clock)), Propose)


async def test_lapsed_dialogues_leave_the_table_and_the_seller() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(max_open=3, max_per_buyer=3), clock)
    async with market(seller, 2) as (runtime, [flooder, honest]):
        for _ in range(3):
            assert isinstance(await ask(runtime, flooder, seller, call(clock, ahead=5)), Propose)
        clock.advance(6)
        assert isinstance(await ask(runtime, honest, seller, call(clock)), Propose)
        assert seller.open.held_by(flooder.address) == 0
        assert [d.buyer for d in seller.dialogues.values()] == [honest.address]


async def test_another_buyer_naming_a_dialogue_id_reaches_only_its_own() -> None:
    clock = ManualClock(START)
    seller = forecaster(DialogueLimits(), clock)
    async with market(seller, 2) as (runtime, [buyer, rival]):
        cfp = call(clock)
        # The rival saw the id (it was asked too) and gets in first with a call of its own.
        assert isinstance(await ask(runtime, rival, seller, cfp), Propose)
        offer = await ask(runtime, buyer, seller, cfp)
        assert isinstance(offer, Propose)
        assert reason(await ask(runtime, rival, seller, CounterOffer(
            dialogue=cfp.dialogue, round=1, price=cr(1)))) == "Propose"  # its own dialogue
        assert isinstance(await accept(runtime, buyer, seller, cfp, offer, clock), Agreed)
        assert reason(await ask(runtime, buyer, seller, cfp)) == "duplicate_dialogue"


def test_limits_name_the_field_that_is_wrong() -> None:
    for changes, message in (
            ({"max_open": 0}, "dialogues.max_open must be a positive integer"),
            ({"max_window": math.nan}, "dialogues.max_window must be a positive number"),
            ({"max_per_buyer": 20, "max_open": 10}, "must not exceed dialogues.max_open"),
            ({"max_open_bytes": 1000}, "dialogues.max_open_bytes (1000) must hold")):
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            DialogueLimits(**changes)
