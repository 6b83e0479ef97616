"""The appliance sells its LLM: per-token agreements, metered deliveries, settled receipts.

Two parties on the in-memory network, each with its real ledger; the seller runs the shipped
SmolLM2 through the node's LLM service. Fault injection (named as such) over-reports tokens
or misses the promised time to first token; both get breached receipts and the escrow back.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aaex_agents import Agent, Context, Credits, Identity, MemoryNetwork, Services, open_runtime
from aaex_agents.llm import LLMService, open_llm_service
from aaex_agents.money import ONE_CREDIT, ZERO
from discovery.query import parse_where
from marketplace.contracts.agreement import (
    Agreement,
    SignedAgreement,
    Terms,
    TokenTerms,
)
from marketplace.contracts.ledger import Ledger, LedgerConfig, open_ledger
from marketplace.contracts.provenance import file_sha256, package_version
from marketplace.contracts.receipt import SignedReceipt, make_receipt
from marketplace.contracts.sla import Delivery, TokenUsage, check_sla
from marketplace.node.config import ConfigError, parse_config
from marketplace.node.node import offers_of, open_node
from marketplace.trade.contracting import seller_countersigner
from marketplace.trade.delegation import Delegator
from marketplace.trade.errors import DelegationFailed
from marketplace.trade.llm_seller import LlmSeller
from marketplace.trade.policy import Wallet
from marketplace.trade.strategies import SellerStrategy
from tests.market_kit import BUYER, OWNER, SELLER, cr

pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra")

from aaex_agents.llm import LlamaCppConfig, LlamaCppLLM, smollm2_gguf_path

FUNDS = Credits.parse(10)
TASK = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}

ONE_THREAD = LlamaCppConfig(n_threads=1)
"""The engine the tests load: one thread, as other tests run on the other core at once."""


class OverReportingSellerFault(LlmSeller):
    """Fault injection: bills ten times the output tokens its engine counted."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        result = await super().perform(ctx, task)
        result["usage"]["output_tokens"] = result["usage"]["output_tokens"] * 10 + 50
        return result


class SlowFirstTokenSellerFault(LlmSeller):
    """Fault injection: an engine whose first token comes 5 s after the promised bound."""

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        result = await super().perform(ctx, task)
        result["usage"]["ttft_ms"] = self.max_ttft_ms + 5_000
        return result


class Client(Agent):
    pass


def seller_of(cls: type[LlmSeller], ledger: Ledger | None = None) -> LlmSeller:
    identity = Identity.generate()
    return cls(identity, strategy=SellerStrategy(**cls.strategy_defaults),
               countersign=seller_countersigner(identity), ledger=ledger,
               price_in_per_1k=0.5, price_out_per_1k=2.0, max_tokens_cap=16,
               max_ttft_ms=20_000)


@pytest.fixture
async def service() -> AsyncIterator[LLMService]:
    async with open_llm_service(await LlamaCppLLM.load(ONE_THREAD)) as opened:
        yield opened


@pytest.fixture
async def books(tmp_path: Path) -> AsyncIterator[tuple[Ledger, Ledger]]:
    """The buyer's and the seller's ledgers, each a real SQLite file of its own."""
    async with open_ledger(tmp_path / "buyer.sqlite", config=LedgerConfig(owner=OWNER)) as b, \
            open_ledger(tmp_path / "seller.sqlite", config=LedgerConfig(owner=OWNER)) as s:
        yield b, s


async def buy(service: LLMService, cls: type[LlmSeller], books: tuple[Ledger, Ledger],
              budget: Credits = ONE_CREDIT) -> tuple[Any, Ledger, Ledger, LlmSeller, Client]:
    """One purchase of TASK from a `cls` seller: (outcome, buyer books, seller books, ...)."""
    client = Client()
    buyer_books, seller_books = books
    await buyer_books.deposit(client.address, FUNDS)
    seller = seller_of(cls, seller_books)

    async def find(capability: str, where: str | None) -> list[str]:
        return [seller.address]

    delegator = Delegator(client.identity, find=find, books=buyer_books,
                          wallet=Wallet(budget=cr(5), per_seller=cr(5), per_task=cr(5)),
                          negotiation_window=0.5)
    network = MemoryNetwork()
    async with open_runtime([client, seller], transports=[network.transport()],
                            services=Services(llm=service)) as rt:
        try:
            outcome: Any = await delegator.delegate(rt.context(client), "llm.chat", TASK,
                                                    budget=budget, deadline=60,
                                                    max_latency_ms=60_000)
        except DelegationFailed as failed:
            outcome = failed
    return outcome, buyer_books, seller_books, seller, client


async def test_a_met_per_token_sale_pays_the_tokens_and_releases_the_rest(
        service: LLMService, books: tuple[Ledger, Ledger]) -> None:
    done, buyer_books, seller_books, seller, client = await buy(service, LlmSeller, books)
    terms = done.agreement.agreement.terms
    assert terms.tokens is not None and terms.tokens.max_output_tokens == 8
    assert done.provenance is not None and done.provenance_problems == []
    usage = done.result["usage"]
    assert 0 < usage["output_tokens"] <= 8 and usage["input_tokens"] > 0
    receipt = done.receipt.receipt
    expected = Credits(
        (usage["input_tokens"] * 500_000 + usage["output_tokens"] * 2_000_000) // 1000)
    assert receipt.verdict == "met"
    assert receipt.usage is not None and receipt.usage.output_tokens == usage["output_tokens"]
    assert receipt.release == expected < terms.price
    assert receipt.refund == terms.price - expected
    done.receipt.verify_against(done.agreement)  # a third party gets the same arithmetic
    assert (await buyer_books.balance(client.address)).available == FUNDS - expected
    assert (await buyer_books.balance(client.address)).held == ZERO
    assert (await buyer_books.balance(seller.address)).available == expected
    await buyer_books.verify()  # the chain replays to the same balances
    line = (await seller_books.statement(client.address)).lines[0]
    assert (line.verdict, line.amount) == ("met", expected)  # the seller's books agree


@pytest.mark.parametrize(("fault", "reason"), [(OverReportingSellerFault, "over-reported"),
                                                (SlowFirstTokenSellerFault, "first token")])
async def test_a_seller_that_over_reports_or_misses_its_ttft_is_breached_and_refunded(
        service: LLMService, books: tuple[Ledger, Ledger], fault: type[LlmSeller],
        reason: str) -> None:
    failed, buyer_books, _, seller, client = await buy(service, fault, books)
    assert isinstance(failed, DelegationFailed)
    assert [a.verdict for a in failed.attempts] == ["breached"]
    agreement = await buyer_books.agreement(failed.attempts[0].agreement_id or "")
    [(_, signed_receipt)] = await buyer_books.settled_receipts()
    outcome = check_sla(agreement.agreement, signed_receipt.receipt.delivery())
    assert outcome.verdict == "breached" and any(reason in r for r in outcome.reasons)
    assert (signed_receipt.receipt.release, signed_receipt.receipt.refund) == (
        ZERO, agreement.agreement.terms.price)
    balance = await buyer_books.balance(client.address)
    assert (balance.available, balance.held) == (FUNDS, ZERO)  # all the escrow came back
    assert (await buyer_books.balance(seller.address)).available == ZERO
    assert [r.receipt.verdict for r in seller.receipts] == ["breached"]


async def test_a_budget_below_the_cap_is_declined_with_the_reason(
        service: LLMService, books: tuple[Ledger, Ledger]) -> None:
    failed, buyer_books, _, _, client = await buy(service, LlmSeller, books, budget=cr(0.001))
    assert isinstance(failed, DelegationFailed)
    assert "over_budget" in failed.attempts[0].detail
    assert (await buyer_books.balance(client.address)).available == FUNDS


async def test_a_budget_too_small_bans_nobody_and_a_sufficient_one_buys_at_once(
        service: LLMService, books: tuple[Ledger, Ledger]) -> None:
    client = Client()
    buyer_books, seller_books = books
    await buyer_books.deposit(client.address, FUNDS)
    seller = seller_of(LlmSeller, seller_books)

    async def find(capability: str, where: str | None) -> list[str]:
        return [seller.address]

    delegator = Delegator(client.identity, find=find, books=buyer_books,
                          wallet=Wallet(budget=cr(5), per_seller=cr(5), per_task=cr(5)),
                          negotiation_window=0.5)
    async with open_runtime([client, seller], transports=[MemoryNetwork().transport()],
                            services=Services(llm=service)) as rt:
        ctx = rt.context(client)
        with pytest.raises(DelegationFailed) as caught:
            await delegator.delegate(ctx, "llm.chat", TASK, budget=cr(0.001), deadline=30,
                                     max_latency_ms=60_000)
        assert [a.detail for a in caught.value.attempts] == ["over_budget"]  # asked once
        assert not delegator.backoff.banned(seller.address, now=ctx.clock.now())
        done = await delegator.delegate(ctx, "llm.chat", TASK, budget=cr(1.0), deadline=30,
                                        max_latency_ms=60_000)
    assert done.receipt.receipt.verdict == "met"


# -- the contract forms, without the model --------------------------------------------------

def _fixed_price_agreement() -> Agreement:
    terms = Terms(task_hash="ab" * 32, capability="forecast.demand", price=1_500_000,
                  max_latency_ms=500, deadline_ms=2_000_000_000_000, penalty=Credits(100))
    return Agreement(dialogue_id="d1", buyer=BUYER.address, seller=SELLER.address, terms=terms,
                     agreed_at_ms=1_900_000_000_000, nonce="0" * 32)


def test_fixed_price_agreements_and_receipts_sign_the_same_bytes_as_before() -> None:
    """Pinned from the code before per-token terms existed: old contracts verify unchanged."""
    agreement = _fixed_price_agreement()
    signed = SignedAgreement.create(agreement, BUYER, SELLER)
    met = SignedReceipt.create(make_receipt(agreement, Delivery(
        result_hash="cd" * 32, started_at_ms=1_900_000_000_001,
        finished_at_ms=1_900_000_000_100), issued_at_ms=1_900_000_000_200), BUYER)
    lost = SignedReceipt.create(make_receipt(agreement, None, issued_at_ms=1_900_000_000_200),
                                BUYER)
    digests = [hashlib.sha256(w).hexdigest()
               for w in (signed.to_wire(), met.to_wire(), lost.to_wire())]
    assert digests == [
        "05805d43104f70c2ec7eb223d4ffdc5a69d8a47a0812a440785796fb0dbf3711",
        "a17ff1afadb6691684584df767c06adf87972cf2b4e70f6a8f61c4d72af9b7e8",
        "2b8455db663ec22291ce2251b59a03ab1e9545395b53b5c71241eeba36732acf"]
    assert b"tokens" not in signed.agreement.signing_bytes()
    assert b"usage" not in met.receipt.signing_bytes()
    assert SignedAgreement.from_wire(signed.to_wire()) == signed


def test_per_token_terms_are_signed_and_round_trip() -> None:
    base = _fixed_price_agreement()
    tokens = TokenTerms(input_per_1k=1000, output_per_1k=3000, max_output_tokens=64,
                        max_ttft_ms=2000, min_tokens_per_s=5)
    agreement = base.model_copy(update={"terms": base.terms.model_copy(
        update={"tokens": tokens})})
    signed = SignedAgreement.create(agreement, BUYER, SELLER)
    assert b'"tokens":{' in agreement.signing_bytes()
    assert SignedAgreement.from_wire(signed.to_wire()).agreement.terms.tokens == tokens
    assert signed.id != SignedAgreement.create(base, BUYER, SELLER).id
    usage = TokenUsage(input_tokens=30, output_tokens=64, ttft_ms=100, generation_ms=1000,
                       input_bytes=60, output_bytes=200)
    delivery = Delivery(result_hash="cd" * 32, started_at_ms=1_900_000_000_001,
                        finished_at_ms=1_900_000_000_100, usage=usage)
    outcome = check_sla(agreement, delivery)
    assert (outcome.verdict, outcome.release) == ("met", Credits((30 * 1000 + 64 * 3000) // 1000))
    slow = usage.model_copy(update={"generation_ms": 63_000})  # 1 token/s < 5 promised
    assert check_sla(agreement, delivery.model_copy(update={"usage": slow})).verdict == "breached"
    missing = check_sla(agreement, delivery.model_copy(update={"usage": None}))
    assert missing.verdict == "breached" and "usage" in missing.reasons[0]


# -- hosted by a node from its configuration ---------------------------------------------------

NODE = {"http": "127.0.0.1:0", "admin": "127.0.0.1:0", "p2p": []}
LLM_AGENT = {"name": "llm", "class": "marketplace:LlmSeller",
             "settings": {"price_in_per_1k": 0.01, "price_out_per_1k": 0.02,
                          "max_tokens_cap": 64}}


async def test_a_node_with_llm_hosts_the_seller_and_its_ad_describes_the_model(
        tmp_path: Path) -> None:
    config = parse_config({"node": NODE, "agents": [LLM_AGENT], "llm": {
        "backend": "llamacpp", "n_ctx": 512, "n_threads": 1}}, base=tmp_path)
    async with open_node(config) as node:
        [seller] = node.runtime.agents.values()
        assert isinstance(seller, LlmSeller) and seller.capability == "llm.chat"
        [offer] = offers_of(seller)
        llm = node.status()["llm"]  # what aaex node status shows: the same warmed figures
        # Provenance names the GGUF file the node runs, hashed once at start.
        model, code_version = seller.provenance_model()
        assert model.name == "SmolLM2-135M-Instruct"
        assert model.file_hash == file_sha256(smollm2_gguf_path())
        assert code_version.split("+src.")[0] == package_version()
        assert llm["speed_runs"] == 3 and llm["tokens_per_second_low"] \
            <= llm["tokens_per_second"] <= llm["tokens_per_second_high"]
    assert (offer.price.kind, offer.price.amount) == ("per_1k_tokens", cr(0.02))
    attributes = offer.attributes
    assert attributes["model"] == "SmolLM2-135M-Instruct"
    assert attributes["quantization"] == "Q4_1" and attributes["context_length"] == 512
    assert attributes["tokens_per_s"] > 0 and attributes["ttft_ms"] > 0  # measured at start
    # warmed and repeated: the median of three runs, with the range they spanned
    assert attributes["tokens_per_s_runs"] == 3
    assert attributes["tokens_per_s_low"] <= attributes["tokens_per_s"] \
        <= attributes["tokens_per_s_high"]
    assert (attributes["price_in_per_1k_micro"], attributes["price_out_per_1k_micro"]) == (
        10_000, 20_000)
    assert (attributes["price_in_per_1k"], attributes["price_out_per_1k"]) == ("0.01", "0.02")
    assert attributes["max_tokens_cap"] == 64
    assert parse_where("model == 'SmolLM2-135M-Instruct' and price_out_per_1k_micro <= 50000"
                       ).matches(attributes)
    assert not parse_where("model == 'Llama-3-8B'").matches(attributes)


async def test_an_llm_seller_without_an_llm_section_fails_start_naming_it(
        tmp_path: Path) -> None:
    config = parse_config({"node": NODE, "agents": [LLM_AGENT]}, base=tmp_path)
    with pytest.raises(ConfigError, match=r"agents\.llm: an LlmSeller .* add an \[llm\]"):
        async with open_node(config):
            pytest.fail("the node started an LLM seller without a model")
    assert not (tmp_path / "data" / "ledger.sqlite").exists()  # failed before opening it
