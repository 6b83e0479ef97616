"""Grants and provenance through delegation, on the in-memory network with fault injection.

The real-node test (test_operators_grants) shows the refusals at negotiation; here a
revocation arrives between the agreement and the task (the seller must check again before
any work), and a seller signs a provenance that does not match its result (the buyer must
say so).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import Agent, Context, Identity, MemoryNetwork, handler, open_runtime
from aaex_agents.clock import SystemClock
from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO
from marketplace.contracts.grant import Grant, SignedGrant, SignedRevocation
from marketplace.contracts.ledger import Balance, Ledger, LedgerConfig, open_ledger
from marketplace.contracts.provenance import InputRef, Provenance, SignedProvenance
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.grants import DataUse, GrantDesk, data_hash
from marketplace.trade.market import MarketSettings, NodeMarket
from marketplace.trade.negotiation import CallForProposals, Decline, Propose
from marketplace.trade.policy import Wallet
from marketplace.trade.recovery import resolve_open
from marketplace.trade.selling import ServiceSeller, Task
from marketplace.trade.strategies import LINEAR, SellerStrategy
from tests.market_kit import OWNER, cr, identity

OWNER_KEY = identity("grant-owner")
HISTORY = [10, 20, 30]
FUNDS = cr(20)


class Forecaster(ServiceSeller):
    capability = "forecast.demand"
    performed = 0

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        self.performed += 1
        return {"forecast": sum(task["history"]) / len(task["history"])}


class Curious(Forecaster):
    """Also tries to use the task's data to train on, and to read it again for the forecast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answers: list[str | None] = []

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        self.answers = [await self.use_data(ctx, task, purpose="training", action="read"),
                        await self.use_data(ctx, task, purpose="forecast.demand",
                                            action="read")]
        return await super().perform(ctx, task)


class RevokedAfterAgreementFault(Forecaster):
    """Fault injection: the owner's revocation reaches the node right after the agreement."""

    revocation: SignedRevocation | None = None

    async def agreed(self, wire: bytes) -> None:
        await super().agreed(wire)
        if self.revocation is not None:
            await self.grants.revoke(self.revocation)


class LyingProvenanceFault(Forecaster):
    """Fault injection: signs a provenance for another result than the one it delivers."""

    def provenance(self, signed: Any, task: dict[str, Any], use: DataUse | None,
                   result: dict[str, Any], at_ms: int) -> SignedProvenance:
        honest = super().provenance(signed, task, use, result, at_ms)
        return SignedProvenance.sign(honest.provenance.model_copy(
            update={"result_hash": data_hash({"forecast": 99})}), self.identity)


def make(cls: type[Forecaster], grants: GrantDesk | None = None) -> Forecaster:
    key = Identity.generate()
    return cls(key, strategy=SellerStrategy(cost=cr(1), exponent=LINEAR, latency_ms=300),
               countersign=seller_countersigner(key), grants=grants)


def grant_for(seller: Forecaster, clock_ms: int) -> SignedGrant:
    return SignedGrant.issue(Grant(
        owner=OWNER_KEY.address, grantee=seller.address, dataset_id="sales",
        dataset_hash=data_hash(HISTORY), actions=("read",), purposes=("forecast.demand",),
        not_before_ms=clock_ms - 60_000, not_after_ms=clock_ms + 3_600_000), OWNER_KEY)


async def buy(seller: Forecaster, use: DataUse | None, books: Ledger) -> tuple[Any, str]:
    """Buy the forecast with `use`; (what delegate returned or raised, the buyer's address)."""
    planner = Agent()
    await books.deposit(planner.address, FUNDS)

    async def find(capability: str, where: str | None) -> list[str]:
        return [seller.address]

    delegator = Delegator(planner.identity, find=find, books=books,
                          wallet=Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10)),
                          negotiation_window=0.5)
    async with open_runtime([planner, seller],
                            transports=[MemoryNetwork().transport()]) as rt:
        try:
            done: Any = await delegator.delegate(
                rt.context(planner), "forecast.demand", {"history": HISTORY}, budget=cr(5),
                deadline=1.5, max_latency_ms=500, use=use)
        except DelegationFailed as exc:  # the test inspects what failed
            done = exc
    return done, planner.address


@pytest.fixture
async def books(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path / "buyer.sqlite",
                           config=LedgerConfig(clock=SystemClock(), owner=OWNER)) as ledger:
        yield ledger


async def test_a_revocation_between_agreement_and_task_stops_the_work_and_refunds(
        books: Ledger) -> None:
    seller = make(RevokedAfterAgreementFault)
    assert isinstance(seller, RevokedAfterAgreementFault)
    signed = grant_for(seller, seller.clock.now_ms())
    seller.revocation = SignedRevocation.revoke(signed, OWNER_KEY, seller.clock.now_ms() - 1)
    use = DataUse(grant=signed.to_wire(), action="read", purpose="forecast.demand",
                  field="history")
    failed, buyer = await buy(seller, use, books)
    first = failed.attempts[0]
    assert first.verdict == "not_delivered"
    assert first.detail.startswith("grant_refused: revoked: grant "), first.detail
    assert seller.performed == 0
    assert await books.balance(buyer) == Balance(available=FUNDS, held=ZERO)  # refunded
    [held] = await books.agreements()
    assert held.agreement.terms.grant is not None
    assert held.agreement.terms.grant.grant_id == signed.id


async def test_a_delivery_carries_provenance_the_buyer_checks(books: Ledger) -> None:
    seller = make(Forecaster)
    signed = grant_for(seller, seller.clock.now_ms())
    use = DataUse(grant=signed.to_wire(), action="read", purpose="forecast.demand",
                  field="history")
    done, _ = await buy(seller, use, books)
    assert done.provenance_problems == []
    record = done.provenance.provenance
    assert record.inputs == (InputRef(hash=done.agreement.agreement.terms.task_hash,
                                      role="task"),
                             InputRef(hash=data_hash(HISTORY), role="data", grant_id=signed.id))
    assert record.model.name == f"{Forecaster.__module__}.Forecaster"
    assert record.code_version.split("+src.")[1] == record.model.file_hash[:12]

    liar = make(LyingProvenanceFault)
    done, _ = await buy(liar, None, books)
    assert done.receipt.receipt.verdict == "met"  # provenance is reported, not an SLA breach
    assert [p.split(":")[0] for p in done.provenance_problems] == ["result"]
    assert isinstance(done.provenance.provenance, Provenance)


class CallCounting(Forecaster):
    """Counts the calls for proposals it is sent (a seller granted nothing must get none)."""

    calls = 0

    @handler
    async def on_cfp(self, ctx: Context, msg: CallForProposals) -> Propose | Decline:
        self.calls += 1
        return await super().on_cfp(ctx, msg)


async def test_each_seller_gets_its_own_grant_and_one_granted_nothing_is_not_asked(
        books: Ledger) -> None:
    first, second, stranger = (make(CallCounting) for _ in range(3))
    now = first.clock.now_ms()
    grants = {s.address: grant_for(s, now) for s in (first, second)}
    asked: list[str] = []

    async def owner_grants(seller: str) -> DataUse | None:
        asked.append(seller)
        signed = grants.get(seller)
        return None if signed is None else DataUse(
            grant=signed.to_wire(), action="read", purpose="forecast.demand", field="history")

    planner = Agent()
    await books.deposit(planner.address, FUNDS)
    sellers = [first, second, stranger]

    async def find(capability: str, where: str | None) -> list[str]:
        return [s.address for s in sellers]

    delegator = Delegator(planner.identity, find=find, books=books,
                          wallet=Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10)),
                          negotiation_window=0.5)
    async with open_runtime([planner, *sellers],
                            transports=[MemoryNetwork().transport()]) as rt:
        done = await delegator.delegate(
            rt.context(planner), "forecast.demand", {"history": HISTORY}, budget=cr(5),
            deadline=3, max_latency_ms=500, use=owner_grants)
    assert sorted(asked) == sorted(s.address for s in sellers)  # each asked for once
    assert (done.attempts[0].seller, done.attempts[0].verdict) == (stranger.address, "no_grant")
    assert isinstance(stranger, CallCounting) and stranger.calls == 0
    assert all(isinstance(s, CallCounting) and s.calls >= 1 for s in (first, second))
    winner = done.agreement.agreement.seller
    bound = done.agreement.agreement.terms.grant
    assert bound is not None and bound.grant_id == grants[winner].id  # the winner's own grant
    assert done.provenance_problems == []


async def test_a_seller_using_granted_data_off_purpose_is_refused_and_audited(
        books: Ledger, tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "seller.sqlite",
                           config=LedgerConfig(clock=SystemClock(), owner=OWNER)) as own:
        seller = make(Curious, GrantDesk(ledger=own))
        assert isinstance(seller, Curious)
        signed = grant_for(seller, seller.clock.now_ms())
        done, _ = await buy(seller, DataUse(grant=signed.to_wire(), action="read",
                                            purpose="forecast.demand", field="history"), books)
        assert done.receipt.receipt.verdict == "met"  # the agreed work still delivers
        refused, allowed = seller.answers
        assert refused is not None and refused.startswith("outside purpose"), refused
        assert allowed is None
        events = [(e.actor, e.purpose) for e in await own.access_events()]
        assert events == [
            (seller.address, "read for forecast.demand"),  # the agreed use, before the work
            (seller.address, f"read for training refused: {refused}"),
            (seller.address, "read for forecast.demand")]
        with pytest.raises(UsageError, match="call it in perform"):
            await seller.use_data(None, {}, purpose="training")  # type: ignore[arg-type]


class TaskLostFault:
    """Fault injection: the buyer dies as its task leaves (the ask never returns)."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.escrowed = asyncio.Event()
        """Set when the task is about to leave: the purchase is on the books."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    async def ask(self, to: str, message: Any, **kwargs: Any) -> Any:
        if isinstance(message, Task):
            self.escrowed.set()
            await asyncio.Event().wait()
        return await self._ctx.ask(to, message, **kwargs)


async def test_a_task_sent_again_after_the_buyer_restarts_carries_its_grant(
        books: Ledger, tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "seller.sqlite",
                           config=LedgerConfig(clock=SystemClock(), owner=OWNER)) as own:
        seller = make(Forecaster, GrantDesk(ledger=own))
        signed = grant_for(seller, seller.clock.now_ms())
        use = DataUse(grant=signed.to_wire(), action="read", purpose="forecast.demand",
                      field="history")
        planner = Agent()
        await books.deposit(planner.address, FUNDS)

        async def find(capability: str, where: str | None) -> list[str]:
            return [seller.address]

        def market() -> NodeMarket:  # a node's market, as built again after a restart
            return NodeMarket({planner.address: planner}, find=find, ledger=books,
                              settings=MarketSettings(negotiation_window=0.5))
        async with open_runtime([planner, seller],
                                transports=[MemoryNetwork().transport()]) as rt:
            fault = TaskLostFault(rt.context(planner))
            dying = asyncio.create_task(market().for_agent(planner.address).delegate(
                fault, "forecast.demand",  # type: ignore[arg-type]
                {"history": HISTORY}, budget=cr(5), deadline=30, max_latency_ms=5_000,
                use=use))
            await asyncio.wait_for(fault.escrowed.wait(), 10)  # the task never leaves
            dying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dying
            [open_] = await books.open_agreements()
            assert open_.use is not None
            passes = await resolve_open(books, market(), {planner.address: planner},
                                        rt.context, grace=1.0)
        assert passes["resent"] == 1 and seller.performed == 1
        [(_, receipt)] = await books.settled_receipts()
        assert receipt.receipt.verdict == "met"
        assert [e.purpose for e in await own.access_events()] == ["read for forecast.demand"]
