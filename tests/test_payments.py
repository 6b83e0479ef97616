"""Payments made outside the market, on real SQLite ledgers with real signatures.

A payment counts only with both partners' signatures: a half-signed or forged one is refused
by the ledger and by the node's desk (which keeps a genuine half as an offer), and `verify`
refuses a payment entry whose signature was rewritten.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents.clock import ManualClock
from aaex_agents.money import ZERO, Credits
from marketplace.contracts.books import Line, payment_line, positions, statement
from marketplace.contracts.chain import canonical_body, entry_hash
from marketplace.contracts.errors import BadContractSignature, LedgerTampered, ReceiptMismatch
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.payment import Payment, SignedPayment
from marketplace.trade.negotiation import Decline
from marketplace.trade.payments import PaymentDesk, PaymentNotice, PaymentTaken
from tests.market_kit import AGREED_AT_MS, BUYER, PRICE, SELLER, STRANGER


def half() -> SignedPayment:
    """The buyer's record of paying the seller the price, signed by the buyer only."""
    payment = Payment(payer=BUYER.address, payee=SELLER.address, amount=PRICE,
                      reference="BANK-1", at_ms=AGREED_AT_MS)
    return SignedPayment(payment=payment, signatures={}).signed_by(BUYER)


def forged_by_stranger(signed: SignedPayment, party: str) -> SignedPayment:
    """`signed` with `party`'s signature made by another key."""
    fake = STRANGER.sign(signed.payment.signing_bytes()).hex()
    return signed.model_copy(update={"signatures": {**signed.signatures, party: fake}})


@pytest.fixture
async def seller_books(tmp_path: Path) -> AsyncIterator[Ledger]:
    config = LedgerConfig(clock=ManualClock(start=AGREED_AT_MS / 1000), owner=SELLER)
    async with open_ledger(tmp_path / "seller.db", config=config) as books:
        yield books


async def test_the_ledger_books_a_payment_only_with_both_genuine_signatures(
        seller_books: Ledger) -> None:
    with pytest.raises(ReceiptMismatch, match="both"):
        await seller_books.record_payment(half(), SELLER.address)
    with pytest.raises(BadContractSignature):
        await seller_books.record_payment(forged_by_stranger(half(), SELLER.address),
                                          SELLER.address)
    assert await seller_books.payments() == []
    complete = half().signed_by(SELLER)
    _, new = await seller_books.record_payment(complete, SELLER.address)
    _, again = await seller_books.record_payment(complete, SELLER.address)
    assert (new, again) == (True, False)
    # the payee's books: what it was paid is its own to spend or withdraw
    assert (await seller_books.balance(SELLER.address)).available == PRICE
    await seller_books.withdraw(SELLER.address, PRICE)
    report = await seller_books.verify()
    assert report.deposits == {"credit": ZERO}


async def test_the_desk_keeps_a_partners_half_and_refuses_forged_signatures(
        seller_books: Ledger) -> None:
    desk = PaymentDesk(seller_books)

    async def send(signed: SignedPayment) -> PaymentTaken | Decline:
        return await desk.receive(SELLER.address, BUYER.address,
                                  PaymentNotice(payment=signed.model_dump(mode="json")))

    forged_sender = forged_by_stranger(half(), BUYER.address)
    refused = await send(forged_sender)
    assert isinstance(refused, Decline) and refused.reason == "payment_refused"
    forged_ours = forged_by_stranger(half(), SELLER.address)  # "complete", our half forged
    refused = await send(forged_ours)
    assert isinstance(refused, Decline) and refused.reason == "payment_refused"
    assert desk.offers == {} and await seller_books.payments() == []
    kept = await send(half())
    assert isinstance(kept, PaymentTaken) and kept.outcome == "offer_kept"
    assert [side for side, _ in desk.pending(SELLER.address, BUYER.address)] == ["theirs"]
    assert await seller_books.payments() == []  # one signature moves nothing
    stranger = await desk.receive(SELLER.address, STRANGER.address,
                                  PaymentNotice(payment=half().model_dump(mode="json")))
    assert isinstance(stranger, Decline) and stranger.reason == "not_a_party"


async def test_verify_refuses_a_payment_entry_whose_signature_was_rewritten(
        seller_books: Ledger) -> None:
    await seller_books.record_payment(half().signed_by(SELLER), SELLER.address)
    path = seller_books.path
    assert path is not None
    await seller_books.aclose()
    with sqlite3.connect(path) as c:
        c.execute("DROP TRIGGER entries_no_update")
        seq, raw, prev = c.execute("SELECT seq, body, prev_hash FROM entries "
                                   "WHERE kind = 'payment'").fetchone()
        body = json.loads(raw)
        body["payment"] = forged_by_stranger(half(), SELLER.address).model_dump(mode="json")
        new = canonical_body(body)
        digest = entry_hash(bytes(prev), seq, "payment", new)
        c.execute("UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (new, digest, seq))
        c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (digest,))
    with pytest.raises(LedgerTampered, match="payment does not verify"):
        async with open_ledger(path, config=LedgerConfig(read_only=True)) as reopened:
            await reopened.verify()


def test_a_payment_line_nets_the_debt_it_paid_to_zero() -> None:
    met = Line(agreement_id="a" * 64, buyer=BUYER.address, seller=SELLER.address,
               capability="forecast.demand", price=PRICE, verdict="met",
               debtor=BUYER.address, creditor=SELLER.address, amount=PRICE)
    part = SignedPayment(payment=Payment(payer=BUYER.address, payee=SELLER.address,
                                         amount=Credits(PRICE.micro // 2), reference="r",
                                         at_ms=AGREED_AT_MS), signatures={})
    lines = [met, payment_line(half().signed_by(SELLER))]
    assert statement(lines, BUYER.address).net == ZERO
    assert positions({}, lines)[SELLER.address].receivable == ZERO
    owed = positions({}, [met, payment_line(part)])
    assert (owed[SELLER.address].receivable, owed[BUYER.address].payable) == (
        PRICE - part.payment.amount, PRICE - part.payment.amount)


async def test_half_signed_payments_are_kept_through_a_restart(tmp_path: Path) -> None:
    """The desk keeps both sides' halves on the ledger's file: a node that restarts (a new
    desk on the reopened file) still lists them, and a recorded payment is gone for good."""
    path = tmp_path / "ledger.sqlite"
    theirs, ours = half(), half()
    async with open_ledger(path, config=LedgerConfig(owner=SELLER)) as ledger:
        desk = PaymentDesk(ledger)
        taken = await desk.receive(SELLER.address, BUYER.address,
                                   PaymentNotice(payment=theirs.model_dump(mode="json")))
        assert isinstance(taken, PaymentTaken) and taken.outcome == "offer_kept"
        await desk.keep_sent(ours.signed_by(SELLER))
    async with open_ledger(path, config=LedgerConfig(owner=SELLER)) as ledger:
        desk = PaymentDesk(ledger)
        await desk.load()
        assert list(desk.offers) == [theirs.id] and list(desk.sent) == [ours.id]
        assert desk.offers[theirs.id] == theirs
        await desk.recorded(ours)
    async with open_ledger(path, config=LedgerConfig(owner=SELLER)) as ledger:
        desk = PaymentDesk(ledger)
        await desk.load()
        assert list(desk.offers) == [theirs.id] and desk.sent == {}
