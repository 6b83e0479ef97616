"""An agreement the buyer never escrowed: the buyer's signed expiry closes it on both books.

Real SQLite ledgers, one per party, and real signatures: the buyer's books decide (escrowed,
or closed and never escrowable again), the seller's books close the sale by the buyer's
signed word, and the two statements agree line for line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents import Credits, UsageError
from aaex_agents.clock import ManualClock
from aaex_agents.money import ZERO
from marketplace.contracts.books import differences
from marketplace.contracts.errors import (
    AgreementExpired,
    AlreadySettled,
    BadContractSignature,
    EscrowHeld,
    LedgerTampered,
    MalformedContract,
    ReceiptMismatch,
)
from marketplace.contracts.expiry import SignedExpiry
from marketplace.contracts.ledger import Balance, Ledger, LedgerConfig, open_ledger
from marketplace.trade.escrow import Escrowed, EscrowQuery, Expired, answer_escrow_query
from marketplace.trade.negotiation import Decline
from tests.market_kit import BUYER, OWNER, PRICE, SELLER, STRANGER, agreement, receipt

FUNDS = Credits(20_000)


@pytest.fixture
async def buyer_books(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path / "buyer.db",
                           config=LedgerConfig(clock=ManualClock(), owner=OWNER)) as opened:
        await opened.deposit(BUYER.address, FUNDS)
        yield opened


@pytest.fixture
async def seller_books(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with open_ledger(tmp_path / "seller.db", config=LedgerConfig(clock=ManualClock(),
                                                                      owner=STRANGER)) as opened:
        yield opened


def test_an_expiry_verifies_only_against_its_own_agreement_and_buyer() -> None:
    signed, other = agreement(), agreement(n=1)
    expiry = SignedExpiry.create(signed, BUYER, at_ms=1_000)
    expiry.verify_against(signed)
    assert SignedExpiry.from_wire(expiry.to_wire()) == expiry
    with pytest.raises(ReceiptMismatch):
        expiry.verify_against(other)
    with pytest.raises(UsageError):
        SignedExpiry.create(signed, SELLER, at_ms=1_000)  # only the buyer says it
    forged = SignedExpiry(expiry=expiry.expiry, buyer_signature=SELLER.sign(
        expiry.expiry.signing_bytes()))
    with pytest.raises(BadContractSignature):
        forged.verify_against(signed)
    wire = bytearray(expiry.to_wire())
    wire[-70] ^= 1
    with pytest.raises((MalformedContract, BadContractSignature, ReceiptMismatch)):
        SignedExpiry.from_wire(bytes(wire)).verify_against(signed)


async def test_both_books_close_an_unfunded_agreement_as_expired_and_agree(
        buyer_books: Ledger, seller_books: Ledger) -> None:
    signed = agreement()
    await seller_books.record_agreement(signed, role="seller")
    answer = await answer_escrow_query(buyer_books, BUYER, SELLER.address,
                                       EscrowQuery(agreement=signed.to_wire()), now_ms=5_000)
    assert isinstance(answer, Expired)
    expiry = SignedExpiry.from_wire(answer.expiry)
    closed = await seller_books.close_expired(signed, expiry, role="seller")
    assert (closed.verdict, closed.to_seller, closed.to_buyer) == ("expired", ZERO, ZERO)
    # asked again (the answer was lost), the buyer gives the same signed expiry
    again = await answer_escrow_query(buyer_books, BUYER, SELLER.address,
                                      EscrowQuery(agreement=signed.to_wire()), now_ms=9_000)
    assert isinstance(again, Expired) and again.expiry == answer.expiry
    assert (await seller_books.close_expired(signed, expiry, role="seller")).duplicate

    ours = await buyer_books.statement(SELLER.address)
    theirs = await seller_books.statement(BUYER.address)
    assert differences(ours, theirs) == [] and ours.net == theirs.net == ZERO
    assert [(line.verdict, line.amount, line.receipt_id) for line in ours.lines] == [
        ("expired", ZERO, expiry.id)]
    assert await buyer_books.balance(BUYER.address) == Balance(FUNDS, ZERO)
    assert await buyer_books.open_agreements() == await seller_books.open_agreements() == []
    assert await buyer_books.unnotified_receipts() == []  # an expiry is no receipt to send
    assert await buyer_books.settled_receipts() == []  # nor a rating
    await buyer_books.verify()
    await seller_books.verify()

    # Closed on the buyer's books: never escrowed later, and no receipt settles it.
    with pytest.raises(AgreementExpired):
        await buyer_books.record_agreement(signed)
    with pytest.raises(AlreadySettled):
        await seller_books.settle(receipt(signed, BUYER, latency_ms=200))
    assert await buyer_books.balance(BUYER.address) == Balance(FUNDS, ZERO)


async def test_an_escrowed_agreement_never_expires(buyer_books: Ledger) -> None:
    signed = agreement()
    await buyer_books.record_agreement(signed)
    answer = await answer_escrow_query(buyer_books, BUYER, SELLER.address,
                                       EscrowQuery(agreement=signed.to_wire()), now_ms=5_000)
    assert answer == Escrowed(agreement_id=signed.id)
    with pytest.raises(EscrowHeld):
        await buyer_books.close_expired(
            signed, SignedExpiry.create(signed, BUYER, at_ms=5_000), role="buyer")
    assert await buyer_books.balance(BUYER.address) == Balance(FUNDS - PRICE, PRICE)
    settled = await buyer_books.settle(receipt(signed, BUYER, latency_ms=200))
    assert settled.verdict == "met"


async def test_only_the_agreements_seller_may_ask(buyer_books: Ledger) -> None:
    signed = agreement()
    answer = await answer_escrow_query(buyer_books, BUYER, STRANGER.address,
                                       EscrowQuery(agreement=signed.to_wire()), now_ms=5_000)
    assert isinstance(answer, Decline) and answer.reason == "unknown_agreement"
    garbage = await answer_escrow_query(buyer_books, BUYER, SELLER.address,
                                        EscrowQuery(agreement=b"\x93junk"), now_ms=5_000)
    assert isinstance(garbage, Decline) and garbage.reason == "bad_agreement"
    assert await buyer_books.lines() == []  # nothing was recorded for either


async def test_verify_refuses_an_expiry_written_over_an_escrowed_agreement(
        tmp_path: Path) -> None:
    """A forged expiry entry that frees escrow is caught by the chain's replay."""
    path = tmp_path / "buyer.db"
    signed = agreement()
    async with open_ledger(path, config=LedgerConfig(clock=ManualClock(), owner=OWNER)) as books:
        await books.deposit(BUYER.address, FUNDS)
        await books.record_agreement(signed)
    # Rewrite the chain as a forger would: append an expire entry with a correct hash.
    from marketplace.contracts import ledger_store as store
    expiry = SignedExpiry.create(signed, BUYER, at_ms=5_000)
    connection = sqlite3.connect(path, isolation_level=None)
    store.transaction(connection, lambda c: store.append(c, "expire", {
        "agreement_id": signed.id, "receipt_id": expiry.id, "expiry": expiry.to_wire().hex(),
        "verdict": "expired", "reason": "not_escrowed", "role": "buyer",
        "buyer": BUYER.address, "seller": SELLER.address, "currency": "credit",
        "price": PRICE.micro, "to_seller": 0, "to_buyer": 0, "at_ms": 5_000},
        agreement_id=signed.id, settled=signed.id, receipt_id=expiry.id))
    connection.close()
    with pytest.raises(LedgerTampered, match="escrowed"):  # the owner verifies on opening
        async with open_ledger(path, config=LedgerConfig(owner=OWNER)) as books:
            await books.verify()
