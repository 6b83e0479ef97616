"""Statements over the market protocol: each side asks the other and compares books."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aaex_agents import Agent, Context, Credits, MemoryNetwork, handler, open_runtime
from aaex_agents.money import ZERO
from aaex_agents.testing import ManualClock
from marketplace import Buyer
from marketplace.contracts.checkpoint import Checkpoint
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.negotiation import Decline
from marketplace.trade.policy import Wallet
from marketplace.trade.selling import ReceiptNotice, ServiceSeller
from marketplace.trade.statements import (
    STATEMENT_RATE,
    StatementQuery,
    StatementReply,
    reconcile,
    statement_between,
)
from marketplace.trade.strategies import LINEAR, SellerStrategy
from tests.market_kit import OWNER, SELLER, STRANGER, agreement, cr, identity, receipt

BUYER_NODE = identity("buyer-node")
"""The key of the buyer's node, which signs its books (the seller's node signs with OWNER)."""


class Averager(ServiceSeller):
    capability = "forecast.demand"

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        return {"forecast": sum(task["history"]) / len(task["history"])}


def seller(ledger: Any, identity: Any = SELLER) -> Averager:
    return Averager(identity, strategy=SellerStrategy(cost=cr(1.0), exponent=LINEAR,
                                                      latency_ms=300),
                    countersign=seller_countersigner(identity), ledger=ledger)


async def test_both_sides_reconcile_and_no_other_partys_deal_is_shown(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales, \
            open_ledger(tmp_path / "buyer.db",
                        config=LedgerConfig(owner=BUYER_NODE)) as purchases:
        shop, shopper = seller(sales), Buyer(name="shopper", ledger=purchases)
        await purchases.deposit(shopper.address, Credits(20_000_000))
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
                              wallet=Wallet(budget=cr(20), per_seller=cr(20), per_task=cr(10)),
                              negotiation_window=0.2)
        async with open_runtime([shop, shopper],
                                transports=[MemoryNetwork().transport()]) as runtime:
            buyer_ctx, seller_ctx = runtime.context(shopper), runtime.context(shop)
            for history in ([1.0, 3.0], [5.0]):
                await delegator.delegate(buyer_ctx, "forecast.demand", {"history": history},
                                         budget=cr(5.0), deadline=10, max_latency_ms=500,
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

            # Each side now holds the other node's signed head: the buyer's came with the
            # receipts, the seller's with its statement.
            from_receipts = shop.checkpoints[BUYER_NODE.address]
            await purchases.verify(against=from_receipts)
            assert from_buyer.checkpoint is not None
            assert from_buyer.checkpoint.ledger == OWNER.address
            await sales.verify(against=from_buyer.checkpoint)
            assert from_seller.checkpoint is not None
            assert from_seller.checkpoint.ledger == BUYER_NODE.address
            assert from_seller.checkpoint.seq > from_receipts.seq > 0

    assert events == ["sellers", "offers", "agreement", "delivery", "receipt", "settled"] * 2
    assert isinstance(answer, StatementReply) and len(answer.lines) == 2
    assert {(line.buyer, line.seller) for line in answer.lines} == {(shopper.address,
                                                                      shop.address)}
    assert answer.net > ZERO  # the buyer owes the seller the two prices
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


async def test_a_seller_keeps_only_the_newest_genuine_checkpoint_of_a_node(
        tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales:
        shop, shopper = seller(sales), Agent(name="shopper")
        signed = agreement(shopper.identity, SELLER, n=3)
        await sales.record_agreement(signed, role="seller")
        paid = receipt(signed, shopper.identity)

        def head(seq: int, fill: str = "ab") -> Checkpoint:
            return Checkpoint.create(BUYER_NODE, seq=seq, hash=fill * 32, entries=seq,
                                     at_ms=seq)

        newer, older = head(7), head(5)
        forged = head(9).model_copy(update={"hash": "cd" * 32})
        async with open_runtime([shop, shopper],
                                transports=[MemoryNetwork().transport()]) as runtime:
            ctx = runtime.context(shopper)
            for checkpoint in (newer, older, forged):
                await ctx.send(shop.address, ReceiptNotice(receipt=paid.to_wire(),
                                                           checkpoint=checkpoint))
    assert shop.checkpoints == {BUYER_NODE.address: newer}
    assert [r.id for r in shop.receipts] == [paid.id] * 3


class PlainShopper(Agent):
    """An agent that buys through ctx.delegate and declares no market handlers at all."""


async def test_a_node_answers_statements_for_an_agent_of_any_class(tmp_path: Path) -> None:
    """The node's market desk answers for a hosted agent whose class has no handler (the
    supply-chain planner is such an agent); before it, reconcile got `no handler`."""
    from marketplace.trade.desk import MarketDesk

    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales, \
            open_ledger(tmp_path / "buyer.db", config=LedgerConfig(owner=BUYER_NODE)) as books:
        shopper, forecaster = PlainShopper(identity("plain")), seller(sales)
        signed = agreement(shopper.identity, SELLER)
        await books.deposit(shopper.address, Credits.parse(1))
        await books.record_agreement(signed)
        await sales.record_agreement(signed, role="seller")
        network = MemoryNetwork()
        async with open_runtime(shopper, transports=[network.transport("buyer")],
                                shared=MarketDesk({shopper.address: shopper}, books)) as buyer, \
                open_runtime(forecaster, transports=[network.transport("seller")]) as sold:
            sold.directory.add(shopper.address, *buyer.endpoints)  # type: ignore[attr-defined]
            found = await reconcile(sold.context(forecaster), sales, shopper.address)
    assert found.differences == ()
    assert [line.agreement_id for line in found.ours.lines] == [signed.id]


async def test_statements_go_to_partners_only_at_a_rate_per_sender(tmp_path: Path) -> None:
    """A key with no agreement on the books gets a refusal and nothing else (before, any
    fresh key got the node's signed checkpoint: its ledger's size and activity), and each
    sender asks within its own allowance, which time refills."""
    clock = ManualClock()
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales:
        shop, stranger = seller(sales), Agent(name="stranger")
        partner, other = Agent(identity("partner")), Agent(identity("other partner"))
        for n, buyer in enumerate((partner, other)):
            await sales.record_agreement(agreement(buyer.identity, SELLER, n=n), role="seller")
        async with open_runtime([shop, stranger, partner, other], clock=clock,
                                transports=[MemoryNetwork().transport()]) as runtime:
            async def ask(agent: Agent) -> object:
                return await runtime.context(agent).ask(shop.address, StatementQuery())

            refused = await ask(stranger)
            answers = [await ask(partner) for _ in range(STATEMENT_RATE.burst + 1)]
            answered_other = await ask(other)
            clock.advance(1 / STATEMENT_RATE.per_second)
            again = await ask(partner)
    assert isinstance(refused, Decline) and refused.reason == "no_trades"
    assert all(isinstance(a, StatementReply) and a.checkpoint is not None
               for a in answers[:-1])
    assert isinstance(answers[-1], Decline) and answers[-1].reason == "rate_limited"
    assert isinstance(answered_other, StatementReply)
    assert isinstance(again, StatementReply)


async def test_reconcile_names_each_trade_only_our_books_hold(tmp_path: Path) -> None:
    """Ours and not the partner's, whether the partner's books hold other trades with us or
    none at all (then it declines `no_trades`: an empty statement, not a failure)."""
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales, \
            open_ledger(tmp_path / "buyer.db",
                        config=LedgerConfig(owner=BUYER_NODE)) as purchases:
        shop = seller(sales)
        shopper, newcomer, idle = (Buyer(identity(name), ledger=purchases)
                                   for name in ("shopper", "newcomer", "idle"))
        shared, ours_only = (agreement(shopper.identity, SELLER, n=n) for n in (1, 2))
        lone = agreement(newcomer.identity, SELLER, n=3)
        for signed in (shared, ours_only, lone):
            await purchases.deposit(signed.agreement.buyer, signed.agreement.terms.price)
            await purchases.record_agreement(signed)
        await sales.record_agreement(shared, role="seller")
        async with open_runtime([shop, shopper, newcomer, idle],
                                transports=[MemoryNetwork().transport()]) as runtime:
            partly, unknown, neither = [
                await reconcile(runtime.context(agent), purchases, shop.address)
                for agent in (shopper, newcomer, idle)]
    assert partly.differences == (f"{ours_only.id[:16]}: on our books, missing on the partner's",)
    assert unknown.theirs is not None and unknown.theirs.lines == ()
    assert unknown.differences == (f"{lone.id[:16]}: on our books, missing on the partner's",)
    assert neither.differences == () and neither.theirs is not None


class Overstating(Agent):
    """A dishonest partner: its statement repeats our lines, with larger amounts owed."""

    def __init__(self, identity: Any, ledger: Any) -> None:
        super().__init__(identity)
        self.ledger = ledger

    @handler
    async def on_statement_query(self, ctx: Context, msg: StatementQuery) -> StatementReply:
        mine = statement_between(await self.ledger.lines(), self.address, ctx.sender)
        lines = tuple(line.model_copy(update={"amount": line.amount + Credits(1)})
                      for line in mine.lines)
        return StatementReply(lines=lines, net=mine.net + Credits(len(lines)))


async def test_reconcile_compares_the_amount_of_each_line(tmp_path: Path) -> None:
    """Same agreement, same verdict, same receipt, another amount: a difference, named with
    both amounts (and the nets differ too)."""
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(owner=OWNER)) as sales, \
            open_ledger(tmp_path / "buyer.db",
                        config=LedgerConfig(owner=BUYER_NODE)) as purchases:
        shopper, liar = Buyer(ledger=purchases), Overstating(SELLER, sales)
        signed = agreement(shopper.identity, SELLER)
        await purchases.deposit(shopper.address, Credits.parse(1))
        await purchases.record_agreement(signed)
        await sales.record_agreement(signed, role="seller")
        paid = receipt(signed, shopper.identity)
        await purchases.settle(paid)
        await sales.settle(paid)
        async with open_runtime([liar, shopper],
                                transports=[MemoryNetwork().transport()]) as runtime:
            found = await reconcile(runtime.context(shopper), purchases, liar.address)
    [ours] = found.ours.lines
    assert ours.verdict == "met" and ours.amount == signed.agreement.terms.price
    assert found.differences[0] == (
        f"{signed.id[:16]}: ours met {ours.amount}, the partner's met "
        f"{ours.amount + Credits(1)} (credits)")
