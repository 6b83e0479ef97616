"""What a simulation measured, how both parties' books compare, and its plots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sim_appliance import Appliance
from bench.stats import percentile
from marketplace.contracts.books import differences
from marketplace.trade.statements import statement_between


@dataclass
class Lookup:
    at: float
    """Virtual seconds since the start."""
    latency: float
    walked: bool
    """False when the node's lookup cache answered (no DHT traffic)."""
    found: int
    live_found: int
    """Sellers found that are online now."""
    online: int
    """Sellers of the capability online now."""


@dataclass
class Metrics:
    window: tuple[float, float]
    lookups: list[Lookup] = field(default_factory=list)
    negotiations: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    """How each invited seller answered a call: ``offer``, a decline's reason, or error."""
    agreements: list[float] = field(default_factory=list)
    delegations: Counter[str] = field(default_factory=Counter)
    delegation_s: list[float] = field(default_factory=list)

    def inside(self, at: float) -> bool:
        return self.window[0] <= at < self.window[1]


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(percentile(list(values), q), 4) if values else None


def lookup_figures(metrics: Metrics) -> dict[str, Any]:
    measured = [x for x in metrics.lookups if x.online > 0]
    walked = [x.latency for x in measured if x.walked]
    ok = sum(1 for x in measured if x.live_found > 0)
    found = sum(x.found for x in measured)
    return {
        "lookups": len(measured),
        "success": round(ok / len(measured), 4) if measured else None,
        "recall": round(sum(min(1.0, x.live_found / x.online) for x in measured)
                        / len(measured), 4) if measured else None,
        "dead_in_results": round(1 - sum(x.live_found for x in measured) / found, 4)
        if found else None,
        "cache_hits": len(measured) - len(walked),
        "latency_p50_s": _pct(walked, 50), "latency_p95_s": _pct(walked, 95),
        "latency_max_s": round(max(walked), 4) if walked else None,
    }


def trade_figures(metrics: Metrics) -> dict[str, Any]:
    seconds = metrics.window[1] - metrics.window[0]
    met = metrics.delegations["met"]
    total = sum(metrics.delegations.values())
    per_minute = Counter(int((t - metrics.window[0]) // 60) for t in metrics.agreements)
    return {
        "negotiations": metrics.negotiations, "agreements": len(metrics.agreements),
        "negotiation_success": round(len(metrics.agreements) / metrics.negotiations, 4)
        if metrics.negotiations else None,
        "sellers_answered": dict(metrics.answers.most_common()),
        "agreements_per_s": round(len(metrics.agreements) / seconds, 4),
        "agreements_per_s_peak_minute": round(max(per_minute.values(), default=0) / 60, 4),
        "delegations": total,
        "delegation_success": round(met / total, 4) if total else None,
        "delegation_outcomes": dict(metrics.delegations.most_common()),
        "delegation_p50_s": _pct(metrics.delegation_s, 50),
        "delegation_p95_s": _pct(metrics.delegation_s, 95),
    }


async def check_ledgers(appliances: Sequence[Appliance]) -> dict[str, Any]:
    """Compare, for every (buyer, seller) pair that traded, the buyer's books with the seller's.

    Each side's statement of their trades (`statement_between`) must list the same agreements
    with the same verdicts, amounts and receipts (`books.differences`), and nets that cancel.
    """
    owner = {o.identity.address: app for app in appliances for o in app.sells}
    lines = {app.index: await app.ledger.lines() for app in appliances if app.ledger is not None}
    pairs: set[tuple[str, str]] = set()
    verdicts: Counter[str] = Counter()
    for app in appliances:
        mine = {o.identity.address for o in app.sells}
        for line in lines[app.index]:
            pairs.add((line.buyer, line.seller))
            if line.buyer in mine:
                verdicts[line.verdict] += 1
    found: list[str] = []
    agreeing = 0
    for buyer, seller in sorted(pairs):
        ours = statement_between(lines[owner[buyer].index], buyer, seller)
        theirs = statement_between(lines[owner[seller].index], seller, buyer)
        wrong = differences(ours, theirs)
        if ours.net != -theirs.net:
            wrong.append(f"net: the buyer's {ours.net}, the seller's {theirs.net}")
        if wrong:
            found += [f"{buyer[:12]}/{seller[:12]} {w}" for w in wrong]
        else:
            agreeing += 1
    return {"pairs": len(pairs), "pairs_agreeing": agreeing, "agree": agreeing == len(pairs),
            "agreements_on_buyers_books": sum(verdicts.values()),
            "verdicts": dict(verdicts.most_common()), "differences": found[:10],
            "differences_total": len(found)}


def plot(results: dict[str, tuple[Metrics, dict[str, Any]]], out: Path) -> list[str]:
    """Lookup latency CDF and agreements per minute, one line per scenario; the files written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (metrics, _) in results.items():
        walked = sorted(x.latency * 1000 for x in metrics.lookups if x.walked and x.online)
        if walked:
            ax.plot(walked, [(i + 1) / len(walked) for i in range(len(walked))], label=name)
    ax.set(xlabel="lookup latency (virtual ms)", ylabel="fraction of lookups",
           title="Capability lookup latency (DHT walks + index reads)")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "lookup_latency_cdf.png", dpi=120)
    written.append(str(out / "lookup_latency_cdf.png"))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (metrics, _) in results.items():
        per_minute = Counter(int((t - metrics.window[0]) // 60) for t in metrics.agreements)
        minutes = range(int((metrics.window[1] - metrics.window[0]) // 60))
        ax.plot(list(minutes), [per_minute[m] / 60 for m in minutes], label=name)
    ax.set(xlabel="simulated minute", ylabel="agreements per simulated second",
           title="Agreements over time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "agreements_over_time.png", dpi=120)
    written.append(str(out / "agreements_over_time.png"))
    plt.close(fig)
    return written
