"""Delegation: award, deliver, receipt, and rerouting when a provider fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import (
    Agent,
    Context,
    Credits,
    HttpTransport,
    Identity,
    MemoryNetwork,
    Message,
    Services,
    StaticDirectory,
    UsageError,
    handler,
    open_runtime,
)
from aaex_agents.money import ONE_CREDIT, ZERO
from aaex_agents.testing import ManualClock
from marketplace.contracts.agreement import SignedAgreement
from marketplace.contracts.ledger import Balance, LedgerConfig, open_ledger
from marketplace.contracts.receipt import SignedReceipt
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Backoff, Delegator
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.market import MarketSettings, NodeMarket
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.strategies import LINEAR, SellerStrategy
from tests.market_kit import OWNER, cr

ROOT = Path(__file__).resolve().parent.parent


class Averager(ServiceSeller):
    capability = "forecast.demand"

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        history = task["history"]
        return {"forecast": sum(history) / len(history)}


class HangingSellerFault(Averager):
    """Fault injection: agrees, then never delivers."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Planner(Agent):
    pass


def make(cls: type[Averager], cost: float) -> Averager:
    identity = Identity.generate()
    return cls(identity, strategy=SellerStrategy(cost=cost, exponent=LINEAR, latency_ms=300),
               countersign=seller_countersigner(identity))


class Book:
    """Records what delegation books (the ledger's role, kept in memory here); with `ledger`
    it also passes every call on to it."""

    def __init__(self, ledger: Any = None) -> None:
        self.holds: dict[str, SignedAgreement] = {}
        self.deliveries: list[str] = []
        self.receipts: list[SignedReceipt] = []
        self.ledger = ledger

    async def record_agreement(self, signed: SignedAgreement, *, role: Any = "buyer",
                               task: Any = None, use: Any = None) -> None:
        self.holds[signed.id] = signed
        if self.ledger is not None:
            await self.ledger.record_agreement(signed, role=role, task=task, use=use)

    async def record_delivery(self, agreement_id: str, delivery: Any) -> None:
        self.deliveries.append(agreement_id)
        if self.ledger is not None:
            await self.ledger.record_delivery(agreement_id, delivery)

    async def record_notified(self, agreement_id: str) -> None:
        if self.ledger is not None:
            await self.ledger.record_notified(agreement_id)

    async def settle(self, receipt: SignedReceipt) -> None:
        receipt.verify_against(self.holds[receipt.receipt.agreement_id])
        self.receipts.append(receipt)
        if self.ledger is not None:
            await self.ledger.settle(receipt)

    async def record_dispute(self, dispute: Any, delivery: Any = None) -> bool:
        if self.ledger is not None:
            return bool(await self.ledger.record_dispute(dispute, delivery))
        return True

    async def balance(self, address: str, currency: str = "credit") -> Balance:
        """Without a ledger, funds are not what a test is about: plenty."""
        if self.ledger is not None:
            return await self.ledger.balance(address, currency)  # type: ignore[no-any-return]
        return Balance(available=ONE_CREDIT * 1_000)

    async def keep_offer(self, kind: str, key: str, side: str, body: dict[str, Any]) -> None:
        if self.ledger is not None:
            await self.ledger.keep_offer(kind, key, side, body)

    @property
    def owner(self) -> str | None:
        return self.ledger.owner if self.ledger is not None else None

    async def checkpoint(self) -> Any:
        return await self.ledger.checkpoint()


async def test_a_failing_provider_is_banned_and_the_subtask_re_awarded() -> None:
    hanging = make(HangingSellerFault, cost=cr(0.5))  # cheapest: it wins first
    honest = make(Averager, cost=cr(2.0))
    planner = Planner()
    book = Book()
    network = MemoryNetwork()

    async def find(capability: str, where: str | None) -> list[str]:
        return [hanging.address, honest.address]

    delegator = Delegator(planner.identity, find=find, books=book,
                          wallet=Wallet(budget=cr(20), per_seller=cr(10), per_task=cr(10)),
                          negotiation_window=0.5)
    async with open_runtime([planner, hanging, honest], transports=[network.transport()]) as rt:
        done = await delegator.delegate(rt.context(planner), "forecast.demand",
                                        {"history": [10, 20, 30]}, budget=cr(5.0), deadline=20,
                                        max_latency_ms=500)
    assert done.result == {"forecast": 20.0}
    assert [a.seller for a in done.attempts] == [hanging.address, honest.address]
    assert [a.verdict for a in done.attempts] == ["not_delivered", "met"]
    assert delegator.backoff.banned(hanging.address, now=time.time())
    verdicts = {r.receipt.seller: r.receipt.verdict for r in book.receipts}
    assert verdicts == {hanging.address: "not_delivered", honest.address: "met"}
    paid = {r.receipt.seller: r.receipt.release for r in book.receipts}
    assert paid[hanging.address] == ZERO and paid[honest.address] > ZERO
    assert len(book.holds) == 2
    assert [r.receipt.verdict for r in honest.receipts] == ["met"]  # the seller got its receipt
    assert delegator.reputation.score(hanging.address).score == 0.0
    assert delegator.reputation.score(honest.address).score == 1.0


async def test_a_decline_is_an_answer_not_a_failure() -> None:
    """A seller that declines (it cannot meet the latency) is asked once and never banned:
    the next purchase it can serve buys from it at once."""
    fast_only = make(Averager, cost=cr(0.5))  # promises 300 ms
    planner = Planner()

    async def find(capability: str, where: str | None) -> list[str]:
        return [fast_only.address]

    delegator = Delegator(planner.identity, find=find,
                          wallet=Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10)),
                          negotiation_window=0.3)
    async with open_runtime([planner, fast_only],
                            transports=[MemoryNetwork().transport()]) as rt:
        ctx = rt.context(planner)
        with pytest.raises(DelegationFailed) as failed:
            await delegator.delegate(ctx, "forecast.demand", {"history": [1.0]},
                                     budget=cr(5), deadline=5, max_latency_ms=100)
        assert [(a.seller, a.detail) for a in failed.value.attempts] == [
            (fast_only.address, "cannot_meet_terms")]  # asked once, its reason kept
        assert not delegator.backoff.banned(fast_only.address, ctx.clock.now())
        done = await delegator.delegate(ctx, "forecast.demand", {"history": [1.0]},
                                        budget=cr(5), deadline=5, max_latency_ms=500)
    assert done.seller == fast_only.address


async def test_a_task_the_seller_cannot_read_gets_a_clear_reason_and_the_seller_lives() -> None:
    strict = make(Averager, cost=cr(0.5))
    planner = Planner()
    book = Book()

    async def find(capability: str, where: str | None) -> list[str]:
        return [strict.address]

    delegator = Delegator(planner.identity, find=find, books=book,
                          wallet=Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10)),
                          negotiation_window=0.3, backoff=Backoff(base=0.001))
    async with open_runtime([planner, strict], transports=[MemoryNetwork().transport()]) as rt:
        with pytest.raises(DelegationFailed) as failed:
            await delegator.delegate(rt.context(planner), "forecast.demand", {"histry": [1]},
                                     budget=cr(5.0), deadline=1.5, max_latency_ms=500)
        # The same seller still serves a well-formed task afterwards (once the buyer lifts
        # the bans its retries piled up).
        delegator.backoff.forgive(strict.address)
        done = await delegator.delegate(rt.context(planner), "forecast.demand",
                                        {"history": [2.0, 4.0]}, budget=cr(5.0), deadline=10,
                                        max_latency_ms=500)
    first = failed.value.attempts[0]
    assert (first.verdict, first.detail) == ("not_delivered", "bad_task: KeyError: 'history'")
    assert done.result == {"forecast": 3.0}


async def test_reputation_from_receipts_reorders_providers_after_a_ban_expires() -> None:
    hanging = make(HangingSellerFault, cost=cr(0.5))  # cheapest, but it never delivers
    honest = make(Averager, cost=cr(2.0))
    planner = Planner()
    network = MemoryNetwork()

    async def find(capability: str, where: str | None) -> list[str]:
        return [hanging.address, honest.address]

    delegator = Delegator(planner.identity, find=find, backoff=Backoff(base=0.001),
                          wallet=Wallet(budget=cr(50), per_seller=cr(25), per_task=cr(10)),
                          negotiation_window=0.3)
    async with open_runtime([planner, hanging, honest], transports=[network.transport()]) as rt:
        first = await delegator.delegate(rt.context(planner), "forecast.demand",
                                         {"history": [1.0]}, budget=cr(5.0), deadline=20,
                                         max_latency_ms=400, top_k=1)
        second = await delegator.delegate(rt.context(planner), "forecast.demand",
                                          {"history": [2.0]}, budget=cr(5.0), deadline=20,
                                          max_latency_ms=400, top_k=1)
    assert [a.seller for a in first.attempts] == [hanging.address, honest.address]
    # the ban has long expired, but the failed seller's receipt keeps it behind
    assert [a.seller for a in second.attempts] == [honest.address]


async def test_delegation_fails_cleanly_when_nobody_delivers() -> None:
    hanging = make(HangingSellerFault, cost=cr(0.5))
    planner = Planner()
    network = MemoryNetwork()

    async def find(capability: str, where: str | None) -> list[str]:
        return [hanging.address]

    delegator = Delegator(planner.identity, find=find, backoff=Backoff(base=60),
                          wallet=Wallet(budget=cr(20), per_seller=cr(10), per_task=cr(10)),
                          negotiation_window=0.2)
    async with open_runtime([planner, hanging], transports=[network.transport()]) as rt:
        with pytest.raises(DelegationFailed) as failed:
            await delegator.delegate(rt.context(planner), "forecast.demand", {"history": [1]},
                                     budget=cr(5.0), deadline=3, max_latency_ms=300)
    assert [a.verdict for a in failed.value.attempts] == ["not_delivered"]


def test_backoff_doubles_and_forgives() -> None:
    backoff = Backoff(base=2, cap=5)
    assert backoff.ban("p", now=0) == 2
    assert backoff.ban("p", now=0) == 4
    assert backoff.ban("p", now=0) == 5
    assert backoff.banned("p", now=4.9) and not backoff.banned("p", now=5.1)
    backoff.forgive("p")
    assert not backoff.banned("p", now=0)


def test_backoff_lists_the_bans_in_force_with_their_reason_and_expiry() -> None:
    backoff = Backoff(base=2, cap=5)
    backoff.ban("p", now=0, reason="breached")
    backoff.ban("q", now=0, reason="failed:timeout")
    backoff.ban("q", now=0, reason="not_delivered")
    assert [(b.peer, b.reason, b.until, b.failures) for b in backoff.active(now=1)] == [
        ("p", "breached", 2, 1), ("q", "not_delivered", 4, 2)]
    assert [b.peer for b in backoff.active(now=3)] == ["q"]  # p's ban expired
    assert backoff.bans_total == 3


async def test_a_provider_process_killed_mid_task_is_not_paid_and_the_next_is_paid_once(
        tmp_path: Path) -> None:
    specs = [("0.5", "5"), ("2.0", "0")]  # the cheap one works slowly: it is killed mid-task
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.seller_peer", "--cost", cost, "--exponent", "1",
        "--latency", "3000", "--work-seconds", work, cwd=ROOT, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE) for cost, work in specs]
    peers = []
    for process in processes:
        assert process.stdout is not None
        peers.append(json.loads(await asyncio.wait_for(process.stdout.readline(), 60)))
    doomed, survivor = peers
    killed = asyncio.Event()

    async def kill_when_started() -> None:
        stdout = processes[0].stdout
        assert stdout is not None
        line = await stdout.readline()
        if b"task_started" in line:
            os.kill(processes[0].pid, signal.SIGKILL)
            killed.set()

    watcher = asyncio.create_task(kill_when_started())
    planner = Planner()
    book = Book()
    directory = StaticDirectory({p["address"]: [p["endpoint"]] for p in peers})

    async def find(capability: str, where: str | None) -> list[str]:
        return [doomed["address"], survivor["address"]]

    credit = 1_000_000  # minor units per credit
    try:
        async with open_ledger(tmp_path / "ledger.sqlite",
                               config=LedgerConfig(owner=OWNER)) as ledger, \
                open_runtime(planner, transports=[HttpTransport()],
                             directory=directory) as rt:
            await ledger.deposit(planner.address, Credits(20 * credit))
            book.ledger = ledger
            delegator = Delegator(planner.identity, find=find, books=book,
                                  wallet=Wallet(budget=cr(20), per_seller=cr(10), per_task=cr(10)),
                                  negotiation_window=1.0)
            done = await delegator.delegate(rt.context(planner), "forecast.demand",
                                            {"history": [4, 6]}, budget=cr(5.0), deadline=30,
                                            max_latency_ms=3000)
            failed = next(r for r in book.receipts if r.receipt.seller == doomed["address"])
            again = await ledger.settle(book.receipts[-1])  # the same receipt twice pays once
            assert again.receipt_id == book.receipts[-1].id
            balances = await ledger.balances()
            positions = await ledger.positions()
            report = await ledger.verify()
    finally:
        watcher.cancel()
        for process in processes:
            if process.returncode is None and process.stdin is not None:
                process.stdin.close()
        await asyncio.gather(*(asyncio.wait_for(p.wait(), 30) for p in processes))
    assert killed.is_set()
    assert done.result == {"forecast": [5.0]}
    assert [a.verdict for a in done.attempts] == ["not_delivered", "met"], done.attempts
    released = [(r.receipt.seller, r.receipt.release) for r in book.receipts if r.receipt.release]
    assert released == [(survivor["address"], done.agreement.agreement.terms.price)]
    assert {r.receipt.seller: r.receipt.verdict for r in book.receipts} == {
        doomed["address"]: "not_delivered", survivor["address"]: "met"}
    price, penalty = done.agreement.agreement.terms.price, failed.receipt.penalty
    assert balances[survivor["address"]].available == price  # paid once
    assert balances[doomed["address"]].available == ZERO  # paid nothing
    assert balances[planner.address].available == Credits(20 * credit) - price
    assert all(b.held == ZERO for b in balances.values())
    assert report.agreements == 2
    owed = positions[doomed["address"]]  # the dead provider owes the penalty, by its receipt
    assert (owed.payable, positions[planner.address].receivable) == (penalty, penalty)


class Job(Message, type="test_delegation.job/1"):
    history: list[float]


class JobDone(Message, type="test_delegation.job_done/1"):
    forecast: float
    seller: str


class Coordinator(Agent):
    @handler
    async def on_job(self, ctx: Context, msg: Job) -> JobDone:
        done = await ctx.delegate("forecast.demand", {"history": msg.history}, budget=cr(5.0),
                                  deadline=10, max_latency_ms=500)
        return JobDone(forecast=done.result["forecast"], seller=done.seller)


async def test_handlers_reach_the_market_through_ctx_delegate() -> None:
    honest = make(Averager, cost=cr(1.0))
    coordinator, client = Coordinator(), Planner()
    network = MemoryNetwork()

    async def find(capability: str, where: str | None) -> list[str]:
        return [honest.address]

    market = NodeMarket({coordinator.address: coordinator}, find=find, ledger=None,
                        settings=MarketSettings(negotiation_window=0.5))
    async with open_runtime([coordinator, client, honest], transports=[network.transport()],
                            services=Services(market=market)) as runtime:
        reply = await runtime.context(client).ask(coordinator.address, Job(history=[1, 3]),
                                                  reply_type=JobDone, timeout=20)
    assert reply == JobDone(forecast=2.0, seller=honest.address)

    async with open_runtime([coordinator], transports=[MemoryNetwork().transport()]) as runtime:
        with pytest.raises(UsageError, match="has no market"):
            await runtime.context(coordinator).delegate("forecast.demand", {}, budget=cr(1),
                                                        deadline=1)


async def test_ledger_counts_match_what_was_recorded_and_settled(tmp_path: Path) -> None:
    from marketplace.contracts.ledger import LedgerConfig, open_ledger
    from tests.market_kit import OWNER

    honest = make(Averager, cost=cr(1.0))
    planner = Planner()
    network = MemoryNetwork()

    async def find(capability: str, where: str | None) -> list[str]:
        return [honest.address]

    async with open_ledger(tmp_path / "l.sqlite",
                           config=LedgerConfig(owner=OWNER)) as ledger, open_runtime(
            [planner, honest], transports=[network.transport()]) as rt:
        await ledger.deposit(planner.address, Credits(10_000_000))
        await ledger.deposit(honest.address, Credits(10_000_000))
        assert await ledger.counts() == (0, 0)
        delegator = Delegator(planner.identity, find=find, books=ledger,
                              wallet=Wallet(budget=cr(9), per_seller=cr(9), per_task=cr(9)),
                              negotiation_window=0.3)
        await delegator.delegate(rt.context(planner), "forecast.demand", {"history": [1.0]},
                                 budget=cr(5.0), deadline=10, max_latency_ms=400)
        assert await ledger.counts() == (1, 1)
        assert len(await ledger.agreements()) == 1


class SlowWorker(Averager):
    """Takes 40 s of the runtime's clock to do the work (the test advances a manual clock)."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        await ctx.clock.sleep(40)
        return await super().perform(ctx, task)


async def test_delegation_times_delivery_on_the_runtimes_clock() -> None:
    """Deadlines, delivery times and bans come from the injected clock, not the wall."""
    slow, planner, network = make(SlowWorker, cost=cr(1.0)), Planner(), MemoryNetwork()
    clock = ManualClock(time.time())

    async def find(capability: str, where: str | None) -> list[str]:
        return [slow.address]

    delegator = Delegator(planner.identity, find=find,
                          wallet=Wallet(budget=cr(20), per_seller=cr(10), per_task=cr(10)),
                          backoff=Backoff(base=600), negotiation_window=0.5)
    async def work_for_40_seconds() -> None:
        await clock.sleeping(1)
        clock.advance(40)

    async with open_runtime([planner, slow], transports=[network.transport()],
                            clock=clock) as rt, asyncio.TaskGroup() as group:
        group.create_task(work_for_40_seconds())
        with pytest.raises(DelegationFailed) as failed:
            await delegator.delegate(rt.context(planner), "forecast.demand",
                                     {"history": [1.0]}, budget=cr(5.0), deadline=300,
                                     max_latency_ms=10_000)
    assert [a.verdict for a in failed.value.attempts] == ["breached"]  # 40 s > 10 s on the clock
    assert delegator.backoff.banned(slow.address, now=clock.now())


def test_the_award_reason_says_when_a_better_bidder_did_not_conclude() -> None:
    """A killed or silent top bidder: the award went to the next, and the reason says so
    instead of calling the lower utility the highest."""
    from marketplace.trade.awards import award_reason
    from marketplace.trade.negotiation import Bid, NegotiationResult
    from marketplace.trade.strategies import Offer

    offer = Offer(cr(1), 100.0, 10.0, ZERO)
    bids = [Bid("thrifty", offer, utility=0.525), Bid("express", offer, utility=0.486)]
    fallback = award_reason(NegotiationResult("d", "express", offer, b"x", bids))
    assert fallback["why"].startswith("utility 0.486: thrifty bid higher (0.525) but did not")
    best = award_reason(NegotiationResult("d", "thrifty", offer, b"x", bids))
    assert best == {"why": "highest utility 0.525 against the runner-up's 0.486",
                    "runner_up": "express"}


async def test_the_runner_up_is_held_to_its_bid_when_the_winner_fails() -> None:
    """The losing bid is the buyer's fallback: when the winner fails, the runner-up alone is
    asked, and the call caps the price at what it bid before, so a failed winner never
    makes the buyer pay more than the market already offered."""
    hanging = make(HangingSellerFault, cost=cr(0.5))  # cheapest: it wins first
    runner = make(Averager, cost=cr(2.0))
    dearer = make(Averager, cost=cr(3.0))
    planner = Planner()
    book = Book()
    events: list[tuple[str, dict[str, Any]]] = []

    async def find(capability: str, where: str | None) -> list[str]:
        return [hanging.address, runner.address, dearer.address]

    delegator = Delegator(planner.identity, find=find, books=book,
                          wallet=Wallet(budget=cr(20), per_seller=cr(10), per_task=cr(10)),
                          negotiation_window=0.5)
    async with open_runtime([planner, hanging, runner, dearer],
                            transports=[MemoryNetwork().transport()]) as rt:
        done = await delegator.delegate(rt.context(planner), "forecast.demand",
                                        {"history": [10, 20, 30]}, budget=cr(5.0), deadline=20,
                                        max_latency_ms=500,
                                        progress=lambda e, d: events.append((e, d)))
    first = next(d for e, d in events if e == "offers")["offers"]
    bid = next(o for o in first if o["seller"] == runner.address)
    agreement = next(d for e, d in events if e == "agreement")
    assert agreement["seller"] == hanging.address and agreement["runner_up"] == runner.address
    fallback = [d for e, d in events if e == "fallback"]
    assert fallback == [{"seller": runner.address, "price": bid["price"],
                         "price_micro": bid["price_micro"]}]
    asked = [d["found"] for e, d in events if e == "sellers"]
    assert asked[1] == [runner.address]  # the fallback alone, not a new call to everyone
    assert done.seller == runner.address
    assert done.agreement.agreement.terms.price.micro <= bid["price_micro"]
    assert not any(r.receipt.seller == dearer.address for r in book.receipts)
