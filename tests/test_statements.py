"""Statements over the market protocol: each side asks the other and compares books."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aaex_agents import Context, MemoryNetwork, open_runtime
from marketplace import Buyer
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ServiceSeller
from marketplace.trade.statements import StatementQuery, StatementReply, reconcile
from marketplace.trade.strategies import LINEAR, SellerStrategy
from tests.market_kit import OWNER, SELLER, STRANGER, agreement, receipt


class Averager(ServiceSeller):
    capability = "forecast.demand"

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        return {"forecast": sum(task["history"]) / len(task["history"])}


def seller(ledger: Any, identity: Any = SELLER) -> Averager:
    return Averager(identity, strategy=SellerStrategy(cost=1.0, exponent=LINEAR, latency_ms=300),
                    countersign=seller_countersigner(identity), ledger=ledger)


async def test_both_sides_reconcile_and_no_other_partys_deal_is_shown(tmp_path: Path) -> None:
    config = LedgerConfig(owner=OWNER)
    async with open_ledger(tmp_path / "seller.db", config=config) as sales, \
            open_ledger(tmp_path / "buyer.db", config=config) as purchases:
        shop, shopper = seller(sales), Buyer(name="shopper", ledger=purchases)
        await purchases.deposit(shopper.address, 20_000_000)
        # The seller node's books also hold our seller's sale to someone else, and another
        # hosted seller's sale to our buyer: neither is our seller's to tell.
        other = agreement(STRANGER, SELLER, n=7)
        await sales.record_agreement(other, role="seller")
        await sales.settle(receipt(other, STRANGER))
        await sales.record_agreement(agreement(shopper.identity, STRANGER, n=8), role="seller")

        async def find(capability: str, where: str | None) -> list[str]:
            return [shop.address]

        events: list[str] = []
        delegator = Delegator(shopper.identity, find=find, books=purchases,
                              wallet=Wallet(budget=20, per_seller=20, per_task=10),
                              negotiation_window=0.2)
        async with open_runtime([shop, shopper],
                                transports=[MemoryNetwork().transport()]) as runtime:
            buyer_ctx, seller_ctx = runtime.context(shopper), runtime.context(shop)
            for history in ([1.0, 3.0], [5.0]):
                await delegator.delegate(buyer_ctx, "forecast.demand", {"history": history},
                                         budget=5.0, deadline=10, max_latency_ms=500,
                                         progress=lambda event, _: events.append(event))
            # Delivered and receipted: nothing is owed, so a draining node need not wait.
            assert shop.owed_work(int(time.time() * 1000)) == 0
            answer = await buyer_ctx.ask(shop.address, StatementQuery())
            from_buyer = await reconcile(buyer_ctx, purchases, shop.address)
            from_seller = await reconcile(seller_ctx, sales, shopper.address)

            # A sale the buyer's books never saw is found from either side.
            extra = agreement(shopper.identity, SELLER, n=9)
            await sales.record_agreement(extra, role="seller")
            gaps = await reconcile(buyer_ctx, purchases, shop.address)

    assert events == ["sellers", "offers", "agreement", "delivery", "receipt", "settled"] * 2
    assert isinstance(answer, StatementReply) and len(answer.lines) == 2
    assert {(line.buyer, line.seller) for line in answer.lines} == {(shopper.address,
                                                                      shop.address)}
    assert answer.net > 0  # the buyer owes the seller the two prices
    assert from_buyer.differences == () and from_seller.differences == ()
    assert from_buyer.ours.net == -from_seller.ours.net == -answer.net
    assert [line.agreement_id for line in from_buyer.ours.lines] == \
        [line.agreement_id for line in from_seller.ours.lines]
    assert gaps.differences == (f"{extra.id[:16]}: on the partner's books, missing on ours",)


async def test_a_partner_without_books_is_a_difference_not_a_crash(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "buyer.db", config=LedgerConfig(owner=OWNER)) as books:
        shop, shopper = seller(None), Buyer(ledger=books)
        async with open_runtime([shop, shopper],
                                transports=[MemoryNetwork().transport()]) as runtime:
            found = await reconcile(runtime.context(shopper), books, shop.address)
            silent = await reconcile(runtime.context(shopper), books, STRANGER.address,
                                     timeout=1)
    assert found.theirs is None and "no_books" in found.differences[0]
    assert silent.theirs is None and "did not answer" in silent.differences[0]
