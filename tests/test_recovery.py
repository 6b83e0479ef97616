"""A buyer's recovery pass over its open purchases, on a manual clock: a purchase whose
seller never delivered is refunded once its deadline and the grace have passed, not before."""

from __future__ import annotations

from pathlib import Path

from aaex_agents import open_runtime
from aaex_agents.testing import ManualClock
from marketplace import Buyer
from marketplace.contracts.books import Position
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.trade.market import MarketSettings, NodeMarket
from marketplace.trade.recovery import resolve_open
from tests.market_kit import AGREED_AT_MS, OWNER, PENALTY, SELLER, agreement, cr

GRACE_S = 2.0


async def _nobody(capability: str, where: str | None) -> list[str]:
    return []


async def test_an_undelivered_purchase_is_refunded_after_its_deadline_and_grace_only(
        tmp_path: Path) -> None:
    """The seller is gone (no endpoint answers): within the grace the purchase waits, for a
    late delivery may still come; past it, the buyer signs a not-delivered receipt, its
    escrow comes back and the seller owes the penalty."""
    clock = ManualClock(AGREED_AT_MS / 1000)
    async with open_ledger(tmp_path / "buyer.db",
                           config=LedgerConfig(owner=OWNER, clock=clock)) as books:
        shopper = Buyer(ledger=books)
        signed = agreement(shopper.identity, SELLER)
        deadline_s = signed.agreement.terms.deadline_ms / 1000
        await books.deposit(shopper.address, cr(1))
        await books.record_agreement(signed, task={"history": [1, 2]})
        market = NodeMarket({shopper.address: shopper}, find=_nobody, ledger=books,
                            settings=MarketSettings(grace=GRACE_S))
        async with open_runtime(shopper, clock=clock) as runtime:
            passes = []
            for at in (deadline_s + 1, deadline_s + GRACE_S + 0.001):
                clock.advance(at - clock.now())
                passes.append(await resolve_open(books, market, {shopper.address: shopper},
                                                 runtime.context, grace=GRACE_S))
                if not passes[-1]["settled"]:
                    assert [o.signed.id for o in await books.open_agreements()] == [signed.id]
        [line] = await books.lines()
        position = (await books.positions()).get(shopper.address, Position())
    assert [p["waiting"] for p in passes] == [1, 0]
    assert [p["settled"] for p in passes] == [0, 1]
    assert (line.verdict, line.debtor, line.amount) == ("not_delivered", SELLER.address, PENALTY)
    assert (position.available, position.held, position.receivable) == (cr(1), cr(0), PENALTY)
