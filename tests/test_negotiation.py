"""Negotiation between real agents: strategies, awards, signed agreements, refusals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from aaex_agents import Agent, Identity, MemoryNetwork, open_runtime
from aaex_agents.money import ZERO
from aaex_agents.runtime import Runtime
from aaex_agents.testing import ManualClock
from marketplace.contracts.agreement import SignedAgreement
from marketplace.trade.contracting import buyer_signer, seller_countersigner
from marketplace.trade.errors import SpendingRefused
from marketplace.trade.negotiation import (
    Accept,
    Agreed,
    CallForProposals,
    CounterOffer,
    Decline,
    DialogueState,
    Propose,
    Seller,
    negotiate,
    new_dialogue_id,
)
from marketplace.trade.policy import AccessControl, AccessList, RateLimit, Wallet
from marketplace.trade.strategies import (
    BOULWARE,
    CONCEDER,
    LINEAR,
    BuyerStrategy,
    BuyerUtility,
    SellerStrategy,
)
from tests.market_kit import cr

ROOT = Path(__file__).resolve().parent.parent


class Forecaster(Seller):
    capability = "forecast.demand"


class Buyer(Agent):
    pass


def seller(cost: float, exponent: float, *, latency: float = 400,
           admit: AccessControl | None = None, clock: ManualClock | None = None) -> Forecaster:
    identity = Identity.generate()
    return Forecaster(identity, strategy=SellerStrategy(cost=cr(cost), exponent=exponent,
                                                        latency_ms=latency),
                      countersign=seller_countersigner(identity),
                      admit=admit.admit if admit else None, clock=clock)


def cfp(seconds: float = 2.0, **changes: object) -> CallForProposals:
    fields: dict[str, object] = dict(
        dialogue=new_dialogue_id(), capability="forecast.demand",
        task={"stores": 20, "weeks": 1}, max_price=cr(10.0), max_latency_ms=1000,
        max_deadline_s=120, wanted_penalty=cr(1.0), respond_by=time.time() + seconds)
    fields.update(changes)
    return CallForProposals(**fields)  # type: ignore[arg-type]


UTILITY = BuyerUtility(max_price=cr(10), max_latency_ms=1000, max_deadline_s=120,
                       wanted_penalty=cr(1.0))


@asynccontextmanager
async def market(*agents: Agent) -> AsyncIterator[Runtime]:
    network = MemoryNetwork()
    async with open_runtime(list(agents), transports=[network.transport()]) as runtime:
        yield runtime


async def test_buyer_awards_the_best_of_three_strategies_and_both_sign() -> None:
    sellers = [seller(3.0, BOULWARE), seller(2.0, LINEAR, latency=800), seller(4.0, CONCEDER)]
    buyer = Buyer()
    async with market(buyer, *sellers) as runtime:
        call = cfp()
        result = await negotiate(runtime.context(buyer), [s.address for s in sellers], call,
                                 utility=UTILITY, strategy=BuyerStrategy(exponent=LINEAR),
                                 sign=buyer_signer(buyer.identity), max_rounds=3)
    assert result.winner is not None and result.agreement is not None
    finals = {b.seller: b.utility for b in result.bids if b.offer is not None}
    assert result.winner == max(finals, key=lambda s: (finals[s], s))
    signed = SignedAgreement.from_wire(result.agreement)  # public keys alone
    assert signed.agreement.buyer == buyer.address
    assert signed.agreement.seller == result.winner
    assert result.offer is not None
    assert signed.agreement.terms.price == result.offer.price
    winner = next(s for s in sellers if s.address == result.winner)
    agreed = winner.dialogue(buyer.address, call.dialogue)
    assert agreed is not None and agreed.state is DialogueState.AGREED
    assert result.round_trips <= 5  # CFP + at most 3 counter rounds + accept


async def test_a_buyer_outside_the_whitelist_gets_a_signed_decline_and_no_data() -> None:
    partner, outsider = Buyer(), Buyer()
    gate = AccessControl({"forecast.demand": AccessList(agents=frozenset({partner.address}))})
    guarded = seller(2.0, LINEAR, admit=gate)
    async with market(partner, outsider, guarded) as runtime:
        call = cfp()
        reply = await runtime.context(outsider).ask(guarded.address, call)
        assert reply == Decline(dialogue=call.dialogue, reason="not_whitelisted",
                                detail=reply.detail)  # type: ignore[union-attr]
        assert guarded.dialogue(outsider.address, call.dialogue) is None
        ok = await runtime.context(partner).ask(guarded.address, cfp())
        assert isinstance(ok, Propose)


async def test_rate_limited_buyers_are_declined() -> None:
    buyer = Buyer()
    gate = AccessControl({"forecast.demand": AccessList(open=True)},
                         rate=RateLimit(per_second=0.001, burst=2))
    limited = seller(2.0, LINEAR, admit=gate)
    async with market(buyer, limited) as runtime:
        replies = [await runtime.context(buyer).ask(limited.address, cfp()) for _ in range(3)]
    assert [type(r).__name__ for r in replies] == ["Propose", "Propose", "Decline"]
    assert replies[2].reason == "rate_limited"  # type: ignore[union-attr]


async def test_unknown_finished_late_and_out_of_order_messages_change_nothing() -> None:
    buyer, intruder = Buyer(), Buyer()
    clock = ManualClock(time.time())
    target = seller(2.0, BOULWARE, clock=clock)
    async with market(buyer, intruder, target) as runtime:
        ctx = runtime.context(buyer)
        call = cfp(seconds=30)
        assert isinstance(await ctx.ask(target.address, call), Propose)
        dialogue = target.dialogues[(buyer.address, call.dialogue)]
        before = (dialogue.round, dialogue.state, dialogue.offer)

        cases = [
            (ctx, CounterOffer(dialogue=new_dialogue_id(), round=1, price=cr(1)),
             "unknown_dialogue"),
            # another buyer naming this id names no dialogue of its own
            (runtime.context(intruder), CounterOffer(dialogue=call.dialogue, round=1, price=cr(1)),
             "unknown_dialogue"),
            (ctx, CounterOffer(dialogue=call.dialogue, round=3, price=cr(1)), "out_of_order"),
            (ctx, Accept(dialogue=call.dialogue, round=2, agreement=b"x"), "out_of_order"),
            (ctx, Accept(dialogue=call.dialogue, round=0, agreement=b"forged"), "bad_agreement"),
            (ctx, cfp(dialogue=call.dialogue), "duplicate_dialogue"),
        ]
        for sender, message, reason in cases:
            reply = await sender.ask(target.address, message)
            assert isinstance(reply, Decline) and reply.reason == reason, (message, reply)
            assert (dialogue.round, dialogue.state, dialogue.offer) == before

        # accepting a price lower than the seller's offer is refused: terms must match
        assert dialogue.offer is not None
        cheap = dialogue.offer.__class__(dialogue.offer.price // 2, dialogue.offer.latency_ms,
                                         dialogue.offer.deadline_s, dialogue.offer.penalty)
        lowball = buyer_signer(buyer.identity)(call.dialogue, target.address, call, cheap)
        reply = await ctx.ask(target.address, Accept(dialogue=call.dialogue, round=0,
                                                     agreement=lowball))
        assert isinstance(reply, Decline) and reply.reason == "terms_mismatch"
        assert dialogue.state is DialogueState.PROPOSED

        honest = buyer_signer(buyer.identity)(call.dialogue, target.address, call, dialogue.offer)
        agreed = await ctx.ask(target.address, Accept(dialogue=call.dialogue, round=0,
                                                      agreement=honest))
        assert isinstance(agreed, Agreed)
        again = await ctx.ask(target.address, Accept(dialogue=call.dialogue, round=0,
                                                     agreement=honest))
        assert isinstance(again, Decline) and again.reason == "dialogue_finished"

        late = cfp(seconds=0.2)
        assert isinstance(await ctx.ask(target.address, late), Propose)
        clock.advance(0.3)  # the seller's clock passes the deadline
        reply = await ctx.ask(target.address, CounterOffer(dialogue=late.dialogue, round=1,
                                                           price=cr(1)))
        assert isinstance(reply, Decline) and reply.reason == "deadline_passed"


async def test_the_wallet_refuses_to_sign_beyond_policy_and_releases_on_decline() -> None:
    wallet = Wallet(budget=cr(5.0), per_seller=cr(3.0), per_task=cr(4.0))
    sign = wallet.guard(buyer_signer(Identity.generate()))
    call = cfp()
    offer_type = __import__("marketplace.trade.strategies", fromlist=["Offer"]).Offer
    with pytest.raises(SpendingRefused, match="per-task"):
        sign(call.dialogue, Identity.generate().address, call, offer_type(cr(4.5), 100, 60, cr(1)))
    seller_address = Identity.generate().address
    sign(call.dialogue, seller_address, call, offer_type(cr(2.5), 100, 60, cr(1)))
    with pytest.raises(SpendingRefused, match="per-seller"):
        sign(call.dialogue, seller_address, call, offer_type(cr(1.0), 100, 60, cr(1)))
    with pytest.raises(SpendingRefused, match="budget"):
        sign(call.dialogue, Identity.generate().address, call,
             offer_type(cr(3.0), 100, 60, cr(1)))
    wallet.release(seller_address, cr(2.5))
    assert wallet.spent == ZERO


async def test_three_seller_processes_with_different_strategies_over_http() -> None:
    import asyncio
    import json
    import sys

    from aaex_agents import HttpTransport, StaticDirectory

    root = ROOT
    specs = [("3.0", str(BOULWARE)), ("2.0", str(LINEAR)), ("4.0", str(CONCEDER))]
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.seller_peer", "--cost", cost, "--exponent", exponent,
        cwd=root, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for cost, exponent in specs]
    try:
        peers = []
        for process in processes:
            assert process.stdout is not None
            peers.append(json.loads(await asyncio.wait_for(process.stdout.readline(), 60)))
        directory = StaticDirectory({p["address"]: [p["endpoint"]] for p in peers})
        buyer = Buyer()
        async with open_runtime(buyer, transports=[HttpTransport()],
                                directory=directory) as runtime:
            result = await negotiate(runtime.context(buyer), [p["address"] for p in peers],
                                     cfp(seconds=5, task={"history": [20.0]}), utility=UTILITY,
                                     strategy=BuyerStrategy(exponent=BOULWARE),
                                     sign=buyer_signer(buyer.identity))
        assert result.agreement is not None
        finals = {b.seller: b.utility for b in result.bids if b.offer is not None}
        assert len(finals) == 3
        assert result.winner == max(finals, key=lambda s: (finals[s], s))
        assert SignedAgreement.from_wire(result.agreement).agreement.seller == result.winner
    finally:
        for process in processes:
            if process.stdin is not None:
                process.stdin.close()
        codes = [await asyncio.wait_for(p.wait(), 30) for p in processes]
    assert codes == [0, 0, 0]
