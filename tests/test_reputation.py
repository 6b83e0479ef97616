"""Reputation counts verified receipts only, and a colluding minority cannot move it far."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aaex_agents import Credits, UsageError
from marketplace.contracts.errors import BadContractSignature, ReceiptMismatch, UnknownAgreement
from marketplace.contracts.ledger import LedgerConfig, open_ledger
from marketplace.contracts.receipt import SignedReceipt
from marketplace.contracts.reputation import NEUTRAL, ReputationBook, collusion_bound, median
from tests.market_kit import BUYER, OWNER, SELLER, STRANGER, agreement, identity, receipt


def test_only_receipts_that_verify_against_a_known_agreement_count() -> None:
    book = ReputationBook()
    signed = agreement()
    honest = receipt(signed, BUYER, latency_ms=200)
    with pytest.raises(UnknownAgreement):
        book.add_receipt(honest)
    book.add_agreement(signed)
    forged = SignedReceipt(receipt=honest.receipt,
                           buyer_signature=STRANGER.sign(honest.receipt.signing_bytes()))
    with pytest.raises(BadContractSignature):
        book.add_receipt(forged)
    other_seller = identity("other seller")
    with pytest.raises(ReceiptMismatch):  # a receipt naming a seller the agreement does not
        book.add_receipt(SignedReceipt.create(
            honest.receipt.model_copy(update={"seller": other_seller.address}), BUYER))
    assert book.score(SELLER.address).raters == 0
    assert book.add_receipt(honest) is True
    assert book.add_receipt(honest) is False  # counted once
    assert book.score(SELLER.address).score == 1.0
    forged_agreement = agreement(n=1).model_copy(update={"seller_signature": bytes(64)})
    with pytest.raises(BadContractSignature):
        book.add_agreement(forged_agreement)


def test_scores_are_per_rater_first_then_the_median() -> None:
    book = ReputationBook()
    buyers = [identity(f"rater {k}") for k in range(3)]
    outcomes = {0: [200, 200, 200, 200], 1: [200, 5_000], 2: [None]}  # met 4/4, 1/2, 0/1
    n = 0
    for k, latencies in outcomes.items():
        for latency in latencies:
            n += 1
            signed = agreement(buyers[k], SELLER, n=n, max_latency_ms=1_000)
            book.add_agreement(signed)
            book.add_receipt(receipt(signed, buyers[k], latency_ms=latency))
    score = book.score(SELLER.address)
    assert (score.score, score.raters, score.receipts) == (0.5, 3, 7)
    assert book.score(STRANGER.address).score == NEUTRAL
    assert set(book.scores()) == {SELLER.address}


async def test_a_book_fed_from_the_ledger(tmp_path: Path) -> None:
    async with open_ledger(tmp_path / "l.db", config=LedgerConfig(owner=OWNER)) as ledger:
        await ledger.deposit(BUYER.address, Credits(100_000))
        await ledger.deposit(SELLER.address, Credits(100_000))
        for n, latency in enumerate([200, 200, 5_000]):
            signed = agreement(n=n, max_latency_ms=1_000)
            await ledger.record_agreement(signed)
            await ledger.settle(receipt(signed, BUYER, latency_ms=latency))
        book = ReputationBook()
        assert book.add_settled(await ledger.settled_receipts()) == 3
    score = book.score(SELLER.address)
    assert (round(score.score, 3), score.raters, score.receipts) == (0.667, 1, 3)


def test_median() -> None:
    assert median([0.3]) == 0.3
    assert median([0.0, 1.0]) == 0.5
    assert median([1.0, 0.0, 0.25]) == 0.25
    with pytest.raises(UsageError):
        median([])
    with pytest.raises(UsageError, match="fewer colluders"):
        collusion_bound([0.5, 0.5], 2)


scores = st.floats(0, 1, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(honest=st.lists(scores, min_size=1, max_size=30), data=st.data())
def test_a_colluding_minority_cannot_move_a_score_beyond_the_documented_bound(
        honest: list[float], data: st.DataObject) -> None:
    colluders = data.draw(st.integers(0, len(honest) - 1), label="colluders")
    lying = data.draw(st.lists(scores | st.sampled_from([0.0, 1.0]), min_size=colluders,
                               max_size=colluders), label="their scores")
    low, high = collusion_bound(honest, colluders)
    combined = median(honest + lying)
    assert low <= combined <= high
    assert min(honest) <= low <= high <= max(honest)
    # The bound is tight: all colluders at one extreme reach its end.
    assert median(honest + [0.0] * colluders) == pytest.approx(low)
    assert median(honest + [1.0] * colluders) == pytest.approx(high)


@settings(max_examples=60, deadline=None)
@given(honest_met=st.lists(st.integers(0, 3), min_size=3, max_size=7), data=st.data())
def test_colluding_raters_with_real_signed_receipts_stay_within_the_bound(
        honest_met: list[int], data: st.DataObject) -> None:
    """The same property end to end: real agreements, real receipts, real signatures."""
    colluders = data.draw(st.integers(0, len(honest_met) - 1), label="colluders")
    verdict_is_met = data.draw(st.booleans(), label="colluders claim met")
    book = ReputationBook()
    n = 0

    def rate(rater: int, met: int, total: int) -> None:
        nonlocal n
        buyer = identity(f"prop rater {rater}")
        for i in range(total):
            n += 1
            signed = agreement(buyer, SELLER, n=n, max_latency_ms=1_000)
            book.add_agreement(signed)
            book.add_receipt(receipt(signed, buyer, latency_ms=200 if i < met else 5_000))

    for rater, met in enumerate(honest_met):
        rate(rater, met, 3)
    honest_scores = [met / 3 for met in honest_met]
    for rater in range(colluders):  # many receipts each: volume must not buy weight
        rate(1_000 + rater, 10 if verdict_is_met else 0, 10)
    low, high = collusion_bound(honest_scores, colluders)
    score = book.score(SELLER.address)
    assert score.raters == len(honest_met) + colluders
    assert low - 1e-12 <= score.score <= high + 1e-12
