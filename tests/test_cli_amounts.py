"""Amounts as `aaex market search` shows them: decimal credits, the micro twin, the kind."""

from __future__ import annotations

import json

from aaex_agents import Identity
from discovery.records import PriceModel, ServiceAd, SlaOffer
from marketplace.cli.market import ad_document, price_text
from tests.market_kit import cr

SELLER = Identity(b"\x03" * 32)


def _llm_ad() -> ServiceAd:
    return ServiceAd(address=SELLER.address, seq=1, expires_at=1_800_000_060.0,
                     capability="llm.chat",
                     price=PriceModel(kind="per_1k_tokens", amount=cr(0.00002)),
                     sla=SlaOffer(p50_ms=100, p95_ms=200, deadline_s=60, availability=0.99))


def test_a_tiny_per_token_price_reads_as_decimal_credits_with_what_it_buys() -> None:
    assert price_text(_llm_ad().price) == "0.00002 credit per 1k output tokens"
    assert price_text(PriceModel(amount=cr(2.5))) == "2.5 credit"


def test_search_json_keeps_the_price_kind_beside_decimal_and_micro_credits() -> None:
    document = json.loads(json.dumps(ad_document(_llm_ad())))
    assert (document["price"], document["price_micro"]) == ("0.00002", 20)
    assert (document["price_kind"], document["price_currency"]) == ("per_1k_tokens", "credit")
