"""The demo's report as tables for the terminal (the report itself is JSON)."""

from __future__ import annotations

from typing import Any

from aaex_agents.money import Credits
from marketplace.cli.console import render_table


def _money(value: str | None) -> str:
    """An amount as the report states it: exact decimal credits."""
    return "" if value is None else value


def render_summary(report: dict[str, Any]) -> str:
    """Job, subtasks, plan, settlements, accounts and both sides' books, one table each."""
    job = report["job"]
    parts = [
        f"request: {report['request']}",
        f"job ({report['job_source']}; from the LLM: "
        f"{', '.join(report['job_fields_from_llm']) or 'no field'}): "
        + ", ".join(f"{k}={v}" for k, v in job.items()),
    ]
    if report["killed"]:
        killed = report["killed"]
        parts.append(f"killed: {killed['provider']} at {killed['at_s']} s, mid-task; "
                     f"rerouted: {', '.join(killed['subtasks']) or 'nothing it held'}; "
                     f"restarted at {killed['restarted_at_s']} s")
    parts.append(render_table(
        ["subtask", "status", "provider", "price", "penalty", "SLA s", "took s", "attempts"],
        [(f"{t['capability']} {t['label']}", t["status"], t.get("provider", ""),
          _money(t.get("price")), _money(t.get("penalty")), _seconds(t.get("max_latency_ms")),
          _seconds(t.get("latency_ms")),
          " -> ".join(f"{a['provider']}:{a['verdict']}" for a in t["attempts"]))
         for t in report["subtasks"]],
        align="lllrrrrl", title="Agreements (signed by planner and provider)"))
    parts.append(render_market(report["subtasks"]))
    parts.append(render_table(
        ["subtask", "model", "kept (every number is in the facts)", "dropped"],
        [(f"{t['capability']} {t['label']}",
          str((t.get("explained_by") or {}).get("model") or "-"),
          _clip(t.get("explanation") or t.get("error", ""), 80),
          str(len((t.get("explained_by") or {}).get("dropped") or [])))
         for t in report["subtasks"]],
        align="lllr",
        title="The providers' LLM explanations: a sentence with a number the facts do not "
              "back is dropped (report.json keeps the model's raw text)"))
    forecast = report["forecast"]
    if forecast["stores"]:
        parts.append(render_table(
            ["store", "units", "forecaster", "MASE", "naive MASE"],
            [(s, v["units"], v["provider"], _ratio(v["mase"]), _ratio(v["naive_mase"]))
             for s, v in forecast["stores"].items()],
            align="lrlrr",
            title=f"Forecasts: mean MASE {_ratio(forecast['mase_mean'])} vs seasonal naive "
                  f"{_ratio(forecast['naive_mase_mean'])}"))
    plan = report["routing"]
    if plan["routes"]:
        parts.append(render_table(
            ["truck", "stores", "load", "km"],
            [(n + 1, " ".join(r["path"][1:-1]), f"{r['load']}/{plan['capacity']}",
              f"{r['distance_km']:.1f}") for n, r in enumerate(plan["routes"])],
            align="rlrr", title=f"Routes: {plan['cost_km']} km in total, feasible; "
                                f"{_against_local(plan)}"))
    elif plan["error"]:
        parts.append(f"routing failed: {plan['error']}")
    ledger = report["ledger"]
    parts.append(render_table(
        ["agreement", "seller", "verdict", "paid", "penalty"],
        [(s["agreement_id"][:12], s["seller"], s["verdict"], _money(s["paid"]),
          _money(s["penalty"])) for s in ledger["settlements"]],
        align="lllrr",
        title=f"Settlements ({ledger['entries']} ledger entries, "
              f"{'verified' if ledger['verified'] else 'BROKEN: ' + ledger['problem']})"))
    parts.append(render_table(
        ["account", "available", "held", "receivable", "payable"],
        [(name, _money(b["available"]), _money(b["held"]), _money(b["receivable"]),
          _money(b["payable"])) for name, b in ledger["positions"].items()],
        align="lrrrr", title="Accounts on the planner's books (receivable, payable: what "
                             "signed receipts say is owed)"))
    if report.get("books"):
        parts.append(render_books(report["books"]))
    if report.get("sovereignty"):
        parts.append(render_sovereignty(report["sovereignty"]))
    files = report["files"]
    parts.append("files: " + ", ".join(files.values()))
    return "\n\n".join(parts)


def render_sovereignty(part: dict[str, Any]) -> str:
    """The warehouse's grants, the uses each side's audit log holds, refusals, provenance."""
    held = {(e["provider"], e["index"]) for e in part["warehouse_entries"]}
    rows = []
    for grant in part["grants"]:
        mine = [(name, e) for name, entries in part["provider_entries"].items()
                for e in entries if e["grant"] == grant["grant_id"]]
        rows.append((grant["grantee"], grant["grant_id"][:12], grant["dataset"],
                     ", ".join(grant["purposes"]),
                     f"{(grant['not_after_ms'] - grant['not_before_ms']) / 60_000:.0f} min",
                     "yes" if grant["transferable"] else "no",
                     ", ".join(e["event"] for _, e in mine) or "-",
                     f"{sum((n, e['index']) in held for n, e in mine)}/{len(mine)}"))
    lines = [render_table(
        ["grantee", "grant", "dataset", "purposes", "window", "pass on", "its log",
         "warehouse holds"], rows, align="llllrlll",
        title="The warehouse's sales history under grants (its log: what the forecaster's "
              "node recorded; warehouse holds: those entries proven to the owner)")]
    lines += [f"refused: {r['provider']}: {r['purpose']} (dataset {r['dataset']}, "
              f"entry {r['index']} of its log)" for r in part["refused"]]
    checked = [p for p in part["provenance"] if not p["problems"]]
    lines.append(f"provenance: {len(checked)} of {len(part['provenance'])} forecasts signed "
                 "with the inputs, model and code that made them, checked by the planner")
    lines += [f"PROBLEM: {p}" for p in part["problems"]]
    return "\n".join(lines)


def render_market(subtasks: list[dict[str, Any]]) -> str:
    """Per subtask, every bid of every round (price, latency, reputation, the planner's
    utility) and the award with its reason: what the market offered and why it chose."""
    rows = []
    for task in subtasks:
        for number, market in enumerate(task.get("market") or [], 1):
            award = market["award"]
            for bid in market["bids"] or [{"provider": "(no bid)"}]:
                won = award is not None and award["provider"] == bid["provider"]
                rows.append((f"{task['capability']} {task['label']}", number, bid["provider"],
                             _money(bid.get("price")) or f"declined: {bid.get('declined')}",
                             _seconds(bid.get("latency_ms")), _ratio(bid.get("reputation")),
                             _ratio(bid.get("utility")),
                             f"awarded: {award['why']}" if won and award else ""))
    return render_table(
        ["subtask", "round", "seller", "price", "SLA s", "reputation", "utility", "award"],
        rows, align="lrlrrrrl",
        title="The market: every seller's bid and the planner's award (utility weighs price, "
              "latency, penalty and reputation)")


def _against_local(plan: dict[str, Any]) -> str:
    local = plan.get("local") or {}
    if local.get("cost_km") is None:
        return f"no local solve to compare ({local.get('error', 'not run')})"
    return (f"a local solve of the same instance: {local['cost_km']} km "
            f"({plan['above_local_pct']:+.2f}% bought vs local)")


def render_books(books: dict[str, Any]) -> str:
    """Each provider's statement with the planner as both sides' ledgers give it.

    Each net is put as who owes whom, so the two columns read the same when the books agree.
    """
    rows = []
    for row in books["providers"]:
        theirs = row["provider_books"]
        rows.append((row["provider"], len(row["planner_books"]["lines"]),
                     _owed(row["planner_books"]["net_micro"], row["provider"], "planner"),
                     "unreadable" if theirs is None else
                     _owed(theirs["net_micro"], "planner", row["provider"]),
                     "yes" if row["agreed"] else "NO: " + "; ".join(row["differences"])))
    untaken = books["receipts_untaken"]
    return render_table(
        ["provider", "agreements", "planner's ledger", "provider's ledger", "agree"], rows,
        align="lrlll", title="Both sides' books: statements between the planner and each "
        "provider" + (f" ({len(untaken)} receipt(s) never taken)" if untaken else ""))


def _owed(net_micro: int, partner: str, us: str) -> str:
    """A statement's net (> 0: `partner` owes `us`) as a sentence."""
    if net_micro == 0:
        return "even"
    debtor, creditor = (partner, us) if net_micro > 0 else (us, partner)
    return f"{debtor} owes {creditor} {Credits(abs(net_micro))}"


def _seconds(milliseconds: float | None) -> str:
    return "" if milliseconds is None else f"{milliseconds / 1000:.1f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"
