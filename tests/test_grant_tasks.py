"""Grants and provenance through delegation, on the in-memory network with fault injection.

The real-node test (test_operators_grants) shows the refusals at negotiation; here a
revocation arrives between the agreement and the task (the seller must check again before
any work), and a seller signs a provenance that does not match its result (the buyer must
say so).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import Agent, Context, Identity, MemoryNetwork, open_runtime
from aaex_agents.clock import SystemClock
from aaex_agents.money import ZERO
from marketplace.contracts.grant import Grant, SignedGrant, SignedRevocation
from marketplace.contracts.ledger import Balance, Ledger, LedgerConfig, open_ledger
from marketplace.contracts.provenance import InputRef, Provenance, SignedProvenance
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.grants import DataUse, data_hash
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ServiceSeller
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


def make(cls: type[Forecaster]) -> Forecaster:
    key = Identity.generate()
    return cls(key, strategy=SellerStrategy(cost=cr(1), exponent=LINEAR, latency_ms=300),
               countersign=seller_countersigner(key))


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
