"""The simulation bench: a tiny market on virtual time gives sane figures and agreeing books."""

from __future__ import annotations

from typing import Any

from aaex_agents.virtual_time import run_virtual
from bench.sim_appliance import Appliance
from bench.simulate import Scenario, simulate
from tests.market_kit import agreement

TINY = Scenario(appliances=20, hours=5 / 60, warmup=120, rate=40, seed=3)
"""20 appliances, 5 simulated minutes of buying at 40 delegations per appliance-hour."""


def run(scenario: Scenario, tamper: Any = None) -> dict[str, Any]:
    _, figures = run_virtual(simulate(scenario, tamper=tamper), inline_executors=True)
    return figures


def test_a_tiny_market_finds_trades_and_both_books_agree() -> None:
    figures = run(TINY)
    lookup, trade, books = figures["lookup"], figures["trade"], figures["ledgers"]
    assert lookup["lookups"] > 10 and lookup["success"] >= 0.9
    assert 0 < lookup["latency_p50_s"] <= lookup["latency_p95_s"]
    assert trade["agreements"] > 10 and trade["negotiation_success"] >= 0.8
    assert trade["delegation_outcomes"].get("met", 0) > 0
    assert figures["dht"]["hops_p50"] >= 1
    assert books["agree"] and books["pairs"] > 0, books["differences"]
    assert books["agreements_on_buyers_books"] >= trade["agreements"]


def test_books_still_agree_after_appliances_crash_and_come_back() -> None:
    figures = run(Scenario(appliances=20, hours=5 / 60, warmup=120, rate=40, seed=4,
                           churn=0.3, clean_leaves=0.0))
    assert figures["churned"] == 4
    assert figures["ledgers"]["agree"], figures["ledgers"]["differences"]
    assert "open" not in figures["ledgers"]["verdicts"]


def test_a_sale_only_the_sellers_books_hold_is_found() -> None:
    """Fault injection: one seller's books gain a sale its buyer's books never saw."""
    async def forge_a_sale(appliances: list[Appliance]) -> None:
        buyer, seller = appliances[0].sells[0], appliances[1].sells[0]
        sold = agreement(buyer.identity, seller.identity, n=99)
        ledger = appliances[1].ledger
        assert ledger is not None
        await ledger.record_agreement(sold, role="seller")

    books = run(TINY, tamper=forge_a_sale)["ledgers"]
    assert not books["agree"]
    assert books["pairs"] - books["pairs_agreeing"] == 1
    assert any("on the partner's books, missing on ours" in d for d in books["differences"])
