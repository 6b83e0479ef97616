"""Disputes on real SQLite ledgers with real signatures: a fact is checked before money moves.

The seller refuses a receipt that contradicts its own signed delivery (a buyer paying 0 for
metered tokens, a breach the seller's timings do not show), the buyer contests a delivery
whose timings contradict what it saw; either way both books hold the agreement as
``disputed`` until a resolution both parties, or the arbiter the agreement names, sign.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import Agent, Credits, MemoryNetwork, StaticDirectory, open_runtime
from aaex_agents.clock import ManualClock
from aaex_agents.errors import PeerUnreachable
from aaex_agents.money import ZERO
from marketplace.contracts.agreement import Agreement, SignedAgreement, Terms, TokenTerms
from marketplace.contracts.books import differences
from marketplace.contracts.chain import canonical_body, entry_hash
from marketplace.contracts.delivery import delivery_signing_bytes, result_hash
from marketplace.contracts.dispute import (
    Dispute,
    Resolution,
    SignedDispute,
    SignedResolution,
    receipt_conflicts,
    timing_conflicts,
)
from marketplace.contracts.errors import (
    BadContractSignature,
    Disputed,
    LedgerTampered,
    ReceiptMismatch,
)
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.receipt import SignedReceipt, make_receipt
from marketplace.contracts.sla import Delivery, TokenUsage
from marketplace.trade.desk import MarketDesk
from marketplace.trade.disputes import (
    ResolutionDesk,
    ResolutionNotice,
    ResolutionTaken,
    raise_dispute,
    resend_disputes,
)
from tests.market_kit import AGREED_AT_MS, BUYER, OWNER, PENALTY, PRICE, SELLER, STRANGER

FUNDS = Credits(50_000)
ARBITER = STRANGER


def signed_agreement(*, tokens: bool = False, arbiter: str | None = None,
                     max_latency_ms: int = 500) -> SignedAgreement:
    token_terms = TokenTerms(input_per_1k=Credits(20_000), output_per_1k=Credits(40_000),
                             max_output_tokens=64, max_ttft_ms=5_000) if tokens else None
    terms = Terms(task_hash=hashlib.sha256(b"task").hexdigest(), capability="llm.chat",
                  price=PRICE, penalty=PENALTY, max_latency_ms=max_latency_ms,
                  deadline_ms=AGREED_AT_MS + 10_000, tokens=token_terms, arbiter=arbiter)
    body = Agreement(dialogue_id="dialogue-d", buyer=BUYER.address, seller=SELLER.address,
                     terms=terms, agreed_at_ms=AGREED_AT_MS, nonce="ab" * 16)
    return SignedAgreement.create(body, BUYER, SELLER)


def seller_delivery(signed: SignedAgreement, *, started: int, finished: int,
                    usage: dict[str, int] | None = None) -> dict[str, Any]:
    """The seller's signed delivery, as its books keep it."""
    result: dict[str, Any] = {"text": "x" * 40}
    if usage is not None:
        result["usage"] = usage
    digest = result_hash(result)
    return {"agreement_id": signed.id, "result": result, "result_hash": digest,
            "started_at_ms": started, "finished_at_ms": finished,
            "signature": SELLER.sign(delivery_signing_bytes(signed.id, digest, started,
                                                            finished)).hex()}


USAGE = {"input_tokens": 38, "output_tokens": 32, "ttft_ms": 100, "generation_ms": 200}


def honest_receipt(signed: SignedAgreement, delivery: dict[str, Any],
                   usage: TokenUsage | None = None) -> SignedReceipt:
    facts = Delivery(result_hash=delivery["result_hash"], started_at_ms=delivery["started_at_ms"],
                     finished_at_ms=delivery["finished_at_ms"], usage=usage)
    return SignedReceipt.create(make_receipt(signed.agreement, facts,
                                             issued_at_ms=AGREED_AT_MS + 9_000), BUYER)


def token_usage(**changes: int) -> TokenUsage:
    counts = {**USAGE, **changes}
    return TokenUsage(**counts, input_bytes=200, output_bytes=40)


@pytest.fixture
async def books(tmp_path: Path) -> AsyncIterator[tuple[Ledger, Ledger]]:
    config = LedgerConfig(clock=ManualClock(start=AGREED_AT_MS / 1000), owner=OWNER)
    async with open_ledger(tmp_path / "buyer.db", config=config) as buyer_books, \
            open_ledger(tmp_path / "seller.db", config=LedgerConfig(
                clock=ManualClock(start=AGREED_AT_MS / 1000), owner=SELLER)) as seller_books:
        await buyer_books.deposit(BUYER.address, FUNDS)
        yield buyer_books, seller_books


def test_a_receipt_stating_the_sellers_own_facts_has_no_conflict() -> None:
    signed = signed_agreement(tokens=True)
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 300,
                               usage=USAGE)
    receipt = honest_receipt(signed, delivery, token_usage())
    assert receipt.receipt.verdict == "met" and receipt.receipt.release > ZERO
    assert receipt_conflicts(signed.agreement, delivery, receipt.receipt) == []


def test_zero_token_counts_contradict_the_sellers_signed_usage() -> None:
    """The attack: a buyer re-signed its receipt with zero tokens, so 0 was released."""
    signed = signed_agreement(tokens=True)
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 300,
                               usage=USAGE)
    cheat = honest_receipt(signed, delivery, token_usage(input_tokens=0, output_tokens=0))
    assert cheat.receipt.release == ZERO and cheat.receipt.verdict == "met"
    cheat.verify_against(signed)  # its arithmetic is right: only the facts are wrong
    fields = {c.field for c in receipt_conflicts(signed.agreement, delivery, cheat.receipt)}
    assert fields == {"usage.input_tokens", "usage.output_tokens"}


def test_a_breach_the_sellers_timings_do_not_show_is_a_conflict() -> None:
    """The attack: `breached` with 501 ms against 500 agreed, the seller's delivery took 0 ms."""
    signed = signed_agreement()
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 100, finished=AGREED_AT_MS + 100)
    lie = Delivery(result_hash=delivery["result_hash"], started_at_ms=AGREED_AT_MS + 100,
                   finished_at_ms=AGREED_AT_MS + 601)
    cheat = SignedReceipt.create(make_receipt(signed.agreement, lie,
                                              issued_at_ms=AGREED_AT_MS + 700), BUYER)
    assert cheat.receipt.verdict == "breached"
    conflicts = receipt_conflicts(signed.agreement, delivery, cheat.receipt)
    assert {c.field for c in conflicts} == {"finished_at_ms", "verdict"}


def test_not_delivered_for_delivered_work_is_a_conflict_unless_it_was_late_anyway() -> None:
    signed = signed_agreement()
    in_time = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 20)
    nothing = SignedReceipt.create(make_receipt(signed.agreement, None,
                                                issued_at_ms=AGREED_AT_MS + 99_000), BUYER)
    assert [c.field for c in receipt_conflicts(signed.agreement, in_time, nothing.receipt)] \
        == ["verdict"]
    late = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 20_000)
    assert receipt_conflicts(signed.agreement, late, nothing.receipt) == []


def test_the_buyer_contests_only_timings_that_change_the_verdict_beyond_tolerance() -> None:
    signed = signed_agreement(max_latency_ms=500)
    fast_claim = seller_delivery(signed, started=AGREED_AT_MS + 100, finished=AGREED_AT_MS + 150)
    # It arrived 3 s after it was sent: the seller's 50 ms is not what happened.
    found = timing_conflicts(signed.agreement, fast_claim, None,
                             dispatched_ms=AGREED_AT_MS + 100, received_ms=AGREED_AT_MS + 3_100)
    assert {c.field for c in found} == {"finished_at_ms", "latency_ms", "verdict"}
    # 520 ms seen against 450 signed: a breach by the buyer's clock, within the tolerance.
    near = seller_delivery(signed, started=AGREED_AT_MS + 100, finished=AGREED_AT_MS + 550)
    assert timing_conflicts(signed.agreement, near, None, dispatched_ms=AGREED_AT_MS + 100,
                            received_ms=AGREED_AT_MS + 620) == []


async def _seller_disputes(buyer_books: Ledger, seller_books: Ledger,
                           signed: SignedAgreement) -> tuple[SignedDispute, dict[str, Any]]:
    """Both books record the agreement; the seller refuses a zero-token receipt."""
    await buyer_books.record_agreement(signed, role="buyer", task={"q": 1})
    await seller_books.record_agreement(signed, role="seller")
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 300,
                               usage=USAGE)
    await seller_books.record_delivery(signed.id, delivery)
    cheat = honest_receipt(signed, delivery, token_usage(input_tokens=0, output_tokens=0))
    conflicts = receipt_conflicts(signed.agreement, delivery, cheat.receipt)
    dispute = SignedDispute.create(Dispute(
        agreement_id=signed.id, raised_by=SELLER.address, party="seller",
        conflicts=tuple(conflicts), receipt=cheat.to_wire().hex(), at_ms=AGREED_AT_MS + 9_500),
        SELLER)
    assert await seller_books.record_dispute(dispute)
    assert not await seller_books.record_dispute(dispute)  # once
    with pytest.raises(Disputed):
        await seller_books.settle(cheat)
    return dispute, delivery


async def test_a_disputed_agreement_holds_the_money_until_both_parties_sign_a_resolution(
        books: tuple[Ledger, Ledger]) -> None:
    buyer_books, seller_books = books
    signed = signed_agreement(tokens=True)
    dispute, delivery = await _seller_disputes(buyer_books, seller_books, signed)
    assert await buyer_books.record_dispute(dispute, delivery)  # the buyer checks it too
    assert (await buyer_books.balance(BUYER.address)).held == PRICE
    for ledger in books:
        (line,) = await ledger.lines()
        assert (line.verdict, line.amount, line.debtor) == ("disputed", ZERO, None)
        assert await ledger.settled_receipts() == []  # no reputation moves
    assert differences(await buyer_books.statement(SELLER.address),
                       await seller_books.statement(BUYER.address)) == []

    offer = SignedResolution(resolution=Resolution(
        agreement_id=signed.id, to_seller=Credits(2_800), to_buyer=PRICE - Credits(2_800),
        penalty=ZERO, note="the seller's counts", at_ms=AGREED_AT_MS + 20_000), signatures={})
    half = offer.signed_by(SELLER)
    with pytest.raises(ReceiptMismatch, match="both parties"):
        await buyer_books.resolve(half)
    both = half.signed_by(BUYER)
    for ledger in books:
        settled = await ledger.resolve(both)
        assert settled.verdict == "resolved" and not settled.duplicate
        assert (await ledger.resolve(both)).duplicate
        (line,) = await ledger.lines()
        assert (line.verdict, line.amount, line.debtor) == ("resolved", Credits(2_800),
                                                            BUYER.address)
        await ledger.verify()
    assert await buyer_books.balance(BUYER.address) == type(
        await buyer_books.balance(BUYER.address))(FUNDS - Credits(2_800), ZERO)
    assert (await buyer_books.balance(SELLER.address)).available == Credits(2_800)


async def test_the_arbiter_named_in_the_agreement_resolves_alone_and_no_one_else(
        books: tuple[Ledger, Ledger]) -> None:
    buyer_books, seller_books = books
    signed = signed_agreement(tokens=True, arbiter=ARBITER.address)
    await _seller_disputes(buyer_books, seller_books, signed)
    decision = SignedResolution(resolution=Resolution(
        agreement_id=signed.id, to_seller=PRICE, to_buyer=ZERO, penalty=ZERO,
        at_ms=AGREED_AT_MS + 20_000), signatures={})
    with pytest.raises(ReceiptMismatch):  # a key the agreement does not name
        await seller_books.resolve(decision.signed_by(OWNER))
    forged = decision.model_copy(update={"signatures": {
        ARBITER.address: OWNER.sign(decision.resolution.signing_bytes()).hex()}})
    with pytest.raises(BadContractSignature):
        await seller_books.resolve(forged)
    assert (await seller_books.resolve(decision.signed_by(ARBITER))).to_seller == PRICE
    (line,) = await seller_books.lines()
    assert (line.verdict, line.amount) == ("resolved", PRICE)


async def test_a_dispute_whose_conflicts_the_evidence_does_not_give_is_refused(
        books: tuple[Ledger, Ledger]) -> None:
    buyer_books, _ = books
    signed = signed_agreement(tokens=True)
    await buyer_books.record_agreement(signed, role="buyer", task={"q": 1})
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 300,
                               usage=USAGE)
    honest = honest_receipt(signed, delivery, token_usage())
    await buyer_books.settle(honest)
    # A seller "disputing" an honest receipt: nothing in the evidence contradicts it.
    invented = SignedDispute.create(Dispute(
        agreement_id=signed.id, raised_by=SELLER.address, party="seller",
        conflicts=({"field": "usage.output_tokens", "seller": "64", "buyer": "32"},),  # type: ignore[arg-type]
        receipt=honest.to_wire().hex(), at_ms=AGREED_AT_MS + 9_500), SELLER)
    with pytest.raises(ReceiptMismatch, match="evidence does not give"):
        await buyer_books.record_dispute(invented, delivery)
    # Signed by a stranger in the seller's name.
    stranger = SignedDispute(dispute=invented.dispute, signature=STRANGER.sign(
        invented.dispute.signing_bytes()))
    with pytest.raises(BadContractSignature):
        await buyer_books.record_dispute(stranger, delivery)
    assert await buyer_books.disputes() == []


async def test_a_dispute_after_the_buyer_settled_moves_the_difference_on_resolution(
        books: tuple[Ledger, Ledger]) -> None:
    """The buyer refunded itself (nothing arrived) before the seller's dispute reached it."""
    buyer_books, seller_books = books
    signed = signed_agreement()
    await buyer_books.record_agreement(signed, role="buyer", task={"q": 1})
    await seller_books.record_agreement(signed, role="seller")
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 20)
    await seller_books.record_delivery(signed.id, delivery)
    nothing = SignedReceipt.create(make_receipt(signed.agreement, None,
                                                issued_at_ms=AGREED_AT_MS + 99_000), BUYER)
    await buyer_books.settle(nothing)
    dispute = SignedDispute.create(Dispute(
        agreement_id=signed.id, raised_by=SELLER.address, party="seller",
        conflicts=tuple(receipt_conflicts(signed.agreement, delivery, nothing.receipt)),
        receipt=nothing.to_wire().hex(), at_ms=AGREED_AT_MS + 99_500), SELLER)
    for ledger in books:
        assert await ledger.record_dispute(dispute, delivery)
    (record,) = await buyer_books.disputes()
    assert record.after_settlement and record.dispute == dispute
    assert await buyer_books.settled_receipts() == []  # the disputed receipt rates no one
    both = SignedResolution(resolution=Resolution(
        agreement_id=signed.id, to_seller=PRICE, to_buyer=ZERO, penalty=ZERO,
        at_ms=AGREED_AT_MS + 120_000), signatures={}).signed_by(BUYER).signed_by(SELLER)
    for ledger in books:
        await ledger.resolve(both)
        await ledger.verify()
    assert (await buyer_books.balance(SELLER.address)).available == PRICE
    assert (await buyer_books.balance(BUYER.address)).available == FUNDS - PRICE
    assert differences(await buyer_books.statement(SELLER.address),
                       await seller_books.statement(BUYER.address)) == []


async def test_verify_refuses_a_dispute_entry_signed_by_no_party(
        books: tuple[Ledger, Ledger]) -> None:
    buyer_books, seller_books = books
    signed = signed_agreement(tokens=True)
    dispute, _ = await _seller_disputes(buyer_books, seller_books, signed)
    await seller_books.verify()
    path = seller_books.path
    assert path is not None
    await seller_books.aclose()
    forged = SignedDispute(dispute=dispute.dispute, signature=STRANGER.sign(
        dispute.dispute.signing_bytes()))
    with sqlite3.connect(path) as c:
        c.execute("DROP TRIGGER entries_no_update")
        seq, raw, prev = c.execute("SELECT seq, body, prev_hash FROM entries "
                                   "WHERE kind = 'dispute'").fetchone()
        body = json.loads(raw)
        body["dispute"] = forged.to_wire().hex()
        new = canonical_body(body)
        digest = entry_hash(bytes(prev), seq, "dispute", new)
        c.execute("UPDATE entries SET body = ?, hash = ? WHERE seq = ?", (new, digest, seq))
        c.execute("UPDATE meta SET value = ? WHERE key = 'head_hash'", (digest,))
    with pytest.raises(LedgerTampered, match="dispute does not verify"):
        async with open_ledger(path, config=LedgerConfig(read_only=True)) as reopened:
            await reopened.verify()


async def test_a_partners_resolution_offer_is_kept_through_a_restart(
        books: tuple[Ledger, Ledger], tmp_path: Path) -> None:
    """The seller's half-signed resolution waits on the buyer's ledger file: a desk opened
    again on it (the node restarted) still has the offer, and forgets it once resolved."""
    buyer_books, seller_books = books
    signed = signed_agreement(tokens=True)
    dispute, delivery = await _seller_disputes(buyer_books, seller_books, signed)
    assert await buyer_books.record_dispute(dispute, delivery)
    half = SignedResolution(resolution=Resolution(
        agreement_id=signed.id, to_seller=Credits(2_800), to_buyer=PRICE - Credits(2_800),
        penalty=ZERO, note="", at_ms=AGREED_AT_MS + 20_000), signatures={}).signed_by(SELLER)
    taken = await ResolutionDesk(buyer_books).receive(
        BUYER.address, SELLER.address, ResolutionNotice(resolution=half.model_dump(mode="json")))
    assert isinstance(taken, ResolutionTaken) and taken.outcome == "offer_kept"
    restarted = ResolutionDesk(buyer_books)
    await restarted.load()
    assert restarted.offers == {signed.id: half}
    await restarted.forget(signed.id)
    again = ResolutionDesk(buyer_books)
    await again.load()
    assert again.offers == {}


async def test_a_dispute_the_partner_could_not_hear_is_sent_again_until_it_is_recorded(
        books: tuple[Ledger, Ledger]) -> None:
    """The buyer's node is down when the seller disputes its receipt: the seller's books
    hold the dispute and a note that the buyer has not heard of it; the recovery pass
    (`resend_disputes`) sends it again once the buyer is back, and then never again."""
    buyer_books, seller_books = books
    signed = signed_agreement(tokens=True)
    await buyer_books.record_agreement(signed, role="buyer", task={"q": 1})
    await seller_books.record_agreement(signed, role="seller")
    delivery = seller_delivery(signed, started=AGREED_AT_MS + 10, finished=AGREED_AT_MS + 300,
                               usage=USAGE)
    await seller_books.record_delivery(signed.id, delivery)
    cheat = honest_receipt(signed, delivery, token_usage(input_tokens=0, output_tokens=0))
    dispute = Dispute(agreement_id=signed.id, raised_by=SELLER.address, party="seller",
                      conflicts=tuple(receipt_conflicts(signed.agreement, delivery,
                                                        cheat.receipt)),
                      receipt=cheat.to_wire().hex(), at_ms=AGREED_AT_MS + 9_500)
    buyer_down = True

    async def route(endpoint: str, frame: bytes, deliver: Any) -> bytes | None:
        if buyer_down and endpoint == "memory://buyer":
            raise PeerUnreachable(f"{endpoint}: down")
        return await deliver(frame)  # type: ignore[no-any-return]

    network = MemoryNetwork(route=route)
    seller, buyer = Agent(SELLER), Agent(BUYER)
    directory = StaticDirectory({BUYER.address: ["memory://buyer"]})
    async with open_runtime(seller, transports=[network.transport()],
                            directory=directory) as seller_side, \
            open_runtime(buyer, transports=[network.transport("buyer")],
                         shared=MarketDesk({BUYER.address: buyer}, buyer_books)):
        ctx = seller_side.context(seller)
        await raise_dispute(ctx, seller_books, SELLER, dispute, delivery, BUYER.address)
        assert await buyer_books.dispute(signed.id) is None  # it never got there
        agents = {SELLER.address: seller}
        assert await resend_disputes(seller_books, agents, seller_side.context) == 0  # still down
        buyer_down = False
        assert await resend_disputes(seller_books, agents, seller_side.context) == 1
        assert (await buyer_books.dispute(signed.id)) == await seller_books.dispute(signed.id)
        assert await resend_disputes(seller_books, agents, seller_side.context) == 0  # heard
