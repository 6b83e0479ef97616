"""Agreements, the SLA check and receipts: signatures, canonical form, arithmetic."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aaex_agents import Credits, Identity, UsageError
from aaex_agents.address import address_from_public_key
from aaex_agents.identity import verify_signature
from aaex_agents.money import ZERO
from marketplace.contracts.agreement import Agreement, SignedAgreement, Terms, TokenTerms
from marketplace.contracts.errors import (
    BadContractSignature,
    ContractRejected,
    MalformedContract,
    ReceiptMismatch,
)
from marketplace.contracts.receipt import Receipt, SignedReceipt, make_receipt
from marketplace.contracts.signing import canonical_json
from marketplace.contracts.sla import Delivery, TokenUsage, check_sla, token_cost
from tests.market_kit import (
    AGREED_AT_MS,
    BUYER,
    PENALTY,
    PRICE,
    SELLER,
    STRANGER,
    agreement,
    flip_bit,
    identity,
    receipt,
)

FAST = settings(max_examples=150, deadline=None)


def test_signed_agreement_verifies_with_the_two_public_keys_alone() -> None:
    wire = agreement().to_wire()
    # A third party knows only the wire bytes and the parties' raw public keys.
    buyer_key, seller_key = BUYER.public_key, SELLER.public_key
    checked = SignedAgreement.from_wire(wire)
    assert checked.agreement.buyer == address_from_public_key(buyer_key)
    assert checked.agreement.seller == address_from_public_key(seller_key)
    # ...and the same check by hand, with nothing but the SDK's verify_signature.
    tag, body, buyer_sig, seller_sig = msgpack.unpackb(wire)
    signed_bytes = tag.encode() + b"\x00" + body
    assert verify_signature(address_from_public_key(buyer_key), signed_bytes, buyer_sig)
    assert verify_signature(address_from_public_key(seller_key), signed_bytes, seller_sig)
    assert checked.id == hashlib.sha256(signed_bytes).hexdigest()


def test_every_single_bit_flip_of_an_agreement_fails_verification() -> None:
    wire = agreement().to_wire()
    for bit in range(len(wire) * 8):
        with pytest.raises(ContractRejected):
            SignedAgreement.from_wire(flip_bit(wire, bit))


def test_every_single_bit_flip_of_a_receipt_fails_verification() -> None:
    signed = agreement()
    wire = receipt(signed, BUYER).to_wire()
    for bit in range(len(wire) * 8):
        with pytest.raises(ContractRejected):
            SignedReceipt.from_wire(flip_bit(wire, bit)).verify_against(signed)


terms_strategy = st.builds(
    Terms, task_hash=st.binary(min_size=1).map(lambda b: hashlib.sha256(b).hexdigest()),
    capability=st.sampled_from(["forecast.demand", "route.vrp", "llm.chat"]),
    price=st.integers(0, 10**15), penalty=st.integers(0, 10**12),
    currency=st.sampled_from(["credit", "eur"]), max_latency_ms=st.integers(1, 10**7),
    deadline_ms=st.integers(AGREED_AT_MS + 1, AGREED_AT_MS + 10**9))


@FAST
@given(terms=terms_strategy, dialogue=st.text("abcXYZ019_-.:", min_size=1, max_size=40),
       latency=st.none() | st.integers(0, 10**7), data=st.data())
def test_any_agreement_or_receipt_with_one_bit_changed_is_refused(
        terms: Terms, dialogue: str, latency: int | None, data: st.DataObject) -> None:
    body = Agreement(dialogue_id=dialogue, buyer=BUYER.address, seller=SELLER.address,
                     terms=terms, agreed_at_ms=AGREED_AT_MS)
    signed = SignedAgreement.create(body, BUYER, SELLER)
    wire = signed.to_wire()
    assert SignedAgreement.from_wire(wire) == signed
    bit = data.draw(st.integers(0, len(wire) * 8 - 1), label="agreement bit")
    with pytest.raises(ContractRejected):
        SignedAgreement.from_wire(flip_bit(wire, bit))

    signed_receipt = receipt(signed, BUYER, latency_ms=latency, start_after_ms=0)
    receipt_wire = signed_receipt.to_wire()
    SignedReceipt.from_wire(receipt_wire).verify_against(signed)
    bit = data.draw(st.integers(0, len(receipt_wire) * 8 - 1), label="receipt bit")
    with pytest.raises(ContractRejected):
        SignedReceipt.from_wire(flip_bit(receipt_wire, bit)).verify_against(signed)


def test_a_signature_by_anyone_else_or_swapped_roles_is_refused() -> None:
    signed = agreement()
    forged = signed.model_copy(update={"seller_signature": STRANGER.sign(
        signed.agreement.signing_bytes())})
    with pytest.raises(BadContractSignature, match="seller's signature"):
        forged.verify()
    swapped = signed.model_copy(update={"buyer_signature": signed.seller_signature,
                                        "seller_signature": signed.buyer_signature})
    with pytest.raises(BadContractSignature):
        SignedAgreement.from_wire(swapped.to_wire())
    with pytest.raises(UsageError, match="cannot sign"):
        signed.agreement.sign(STRANGER)


def test_a_signature_made_for_another_context_does_not_transfer() -> None:
    signed = agreement()
    untagged = SELLER.sign(canonical_json(signed.agreement))  # same body, no domain tag
    record_tagged = SELLER.sign(b"aaex/service-ad/1\x00" + canonical_json(signed.agreement))
    for signature in (untagged, record_tagged):
        with pytest.raises(BadContractSignature):
            signed.model_copy(update={"seller_signature": signature}).verify()


def test_a_non_canonical_body_is_refused_even_with_valid_signatures() -> None:
    signed = agreement()
    loose = canonical_json(signed.agreement).replace(b",", b", ")
    tagged = b"aaex/agreement/1\x00" + loose
    wire = msgpack.packb(["aaex/agreement/1", loose, BUYER.sign(tagged), SELLER.sign(tagged)])
    with pytest.raises(MalformedContract, match="canonical"):
        SignedAgreement.from_wire(wire)


def test_agreement_invariants() -> None:
    signed = agreement()
    fields = signed.agreement.model_dump()
    with pytest.raises(ValidationError, match="different agents"):
        Agreement.model_validate({**fields, "seller": BUYER.address})
    with pytest.raises(ValidationError, match="deadline_ms"):
        Agreement.model_validate({**fields, "agreed_at_ms": fields["terms"]["deadline_ms"]})
    with pytest.raises(ValidationError, match="checksum"):
        Agreement.model_validate({**fields, "buyer": BUYER.address[:-1] + "q"})
    assert Agreement.model_validate(fields).id == signed.id
    other = Agreement.model_validate({k: v for k, v in fields.items() if k != "nonce"})
    assert other.id != signed.id  # a fresh random nonce


def test_signed_contracts_travel_inside_messages_and_json() -> None:
    signed = agreement()
    signed_receipt = receipt(signed, BUYER)
    for value in (signed, signed_receipt):
        as_msgpack = msgpack.unpackb(msgpack.packb(value.model_dump(mode="python")))
        assert type(value).model_validate(as_msgpack) == value
        assert type(value).model_validate_json(value.model_dump_json()) == value


def test_sla_verdicts() -> None:
    body = agreement(max_latency_ms=1_000, deadline_after_ms=5_000).agreement
    start = AGREED_AT_MS + 100

    def judge(started: int, finished: int) -> tuple[str, int | None, tuple[int, int, int]]:
        outcome = check_sla(body, Delivery(result_hash="0" * 64, started_at_ms=started,
                                           finished_at_ms=finished))
        return outcome.verdict, outcome.latency_ms, (outcome.release, outcome.refund,
                                                     outcome.penalty)

    assert judge(start, start + 1_000) == ("met", 1_000, (PRICE, ZERO, ZERO))
    assert judge(start, start + 1_001) == ("breached", 1_001, (ZERO, PRICE, PENALTY))
    assert judge(AGREED_AT_MS + 4_500, AGREED_AT_MS + 5_001)[0] == "breached"  # past deadline
    missing = check_sla(body, None)
    assert (missing.verdict, missing.release, missing.refund, missing.penalty) == (
        "not_delivered", ZERO, PRICE, PENALTY)
    with pytest.raises(UsageError, match="before it started"):
        judge(start, start - 1)
    with pytest.raises(UsageError, match="before the agreement"):
        judge(AGREED_AT_MS - 1, AGREED_AT_MS + 10)


def test_a_per_token_sale_releases_its_token_cost_but_never_more_than_the_cap() -> None:
    """The price of a per-token sale is the cap the buyer escrowed: tokens that cost more
    (a price negotiated under the worst case) release the cap and no more."""
    tokens = TokenTerms(input_per_1k=Credits(1_000), output_per_1k=Credits(3_000),
                        max_output_tokens=64, max_ttft_ms=2_000)
    usage = TokenUsage(input_tokens=30, output_tokens=64, ttft_ms=100, generation_ms=1_000,
                       input_bytes=60, output_bytes=200)
    delivery = Delivery(result_hash="0" * 64, started_at_ms=AGREED_AT_MS + 1,
                        finished_at_ms=AGREED_AT_MS + 100, usage=usage)
    cost = token_cost(tokens, usage)
    assert cost == Credits((30 * 1_000 + 64 * 3_000) // 1_000)

    def judged(cap: Credits) -> tuple[str, Credits, Credits]:
        body = agreement(price=cap).agreement
        body = body.model_copy(update={"terms": body.terms.model_copy(
            update={"tokens": tokens})})
        outcome = check_sla(body, delivery)
        receipt = make_receipt(body, delivery, issued_at_ms=AGREED_AT_MS + 200)
        assert (receipt.release, receipt.refund) == (outcome.release, outcome.refund)
        return outcome.verdict, outcome.release, outcome.refund

    assert judged(cost * 2) == ("met", cost, cost)
    assert judged(cost - Credits(1)) == ("met", cost - Credits(1), ZERO)


@FAST
@given(terms=terms_strategy, start=st.integers(0, 10**9), latency=st.integers(0, 10**8))
def test_sla_outcome_follows_the_terms_and_conserves_money(
        terms: Terms, start: int, latency: int) -> None:
    body = Agreement(dialogue_id="d", buyer=BUYER.address, seller=SELLER.address, terms=terms,
                     agreed_at_ms=AGREED_AT_MS)
    started = AGREED_AT_MS + start
    outcome = check_sla(body, Delivery(result_hash="0" * 64, started_at_ms=started,
                                       finished_at_ms=started + latency))
    met = latency <= terms.max_latency_ms and started + latency <= terms.deadline_ms
    assert outcome.verdict == ("met" if met else "breached")
    assert outcome.release + outcome.refund == terms.price
    assert outcome.penalty == (ZERO if met else terms.penalty)
    assert bool(outcome.reasons) == (not met)


def test_receipts_whose_arithmetic_does_not_follow_are_refused() -> None:
    signed = agreement(max_latency_ms=1_000)
    honest = receipt(signed, BUYER, latency_ms=2_000).receipt
    assert honest.verdict == "breached"
    lies = {
        "met despite the latency": {"verdict": "met", "release": PRICE, "refund": 0,
                                    "penalty": 0},
        "penalty inflated": {"penalty": PENALTY + Credits(1)},
        "latency misstated": {"latency_ms": 900},
    }
    for lie, change in lies.items():
        forged = Receipt.model_validate({**honest.model_dump(), **change})
        with pytest.raises(ReceiptMismatch):
            SignedReceipt.create(forged, BUYER).verify_against(signed)
        assert lie
    other = agreement(n=1)
    with pytest.raises(ReceiptMismatch, match="names agreement"):
        receipt(signed, BUYER).verify_against(other)


def test_only_the_buyer_signs_a_receipt() -> None:
    signed = agreement()
    body = receipt(signed, BUYER).receipt
    with pytest.raises(UsageError, match="signed by its buyer"):
        SignedReceipt.create(body, SELLER)
    by_seller = SignedReceipt(receipt=body, buyer_signature=SELLER.sign(body.signing_bytes()))
    with pytest.raises(BadContractSignature):
        by_seller.verify_against(signed)


def test_receipt_shape_matches_its_verdict() -> None:
    body = receipt(agreement(), BUYER, latency_ms=None).receipt
    assert body.verdict == "not_delivered" and body.delivery() is None
    with pytest.raises(ValidationError, match="carries no result"):
        Receipt.model_validate({**body.model_dump(), "result_hash": "0" * 64})
    delivered = make_receipt(agreement().agreement, Delivery(
        result_hash="0" * 64, started_at_ms=AGREED_AT_MS, finished_at_ms=AGREED_AT_MS + 5),
        issued_at_ms=AGREED_AT_MS + 6)
    with pytest.raises(ValidationError, match="carries the result"):
        Receipt.model_validate({**delivered.model_dump(), "latency_ms": None})


def test_reprs_name_the_contract() -> None:
    signed = agreement()
    assert repr(signed).startswith(f"<SignedAgreement {signed.id[:12]} forecast.demand")
    assert "breached" in repr(receipt(signed, BUYER, latency_ms=5_000))
    assert isinstance(identity("x"), Identity)
