"""How well does the planner read a job? The LLM, the rules and the checked result, per field.

    python -m bench.job_reader            # SmolLM2-135M on llama.cpp (the demo's model)

Each of the phrasings below states one replenishment job in other words; the truth is
written beside it. For every phrasing the bench runs the demo's reader
(`aaex_examples.supply_chain.job.interpret`) and scores, field by field: what the model
proposed (before any check), what the deterministic reader alone finds, and the job that
reaches the market (the model's fields that passed the checks, the rules' for the rest).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
from typing import Any

from aaex_agents.llm import LlamaCppLLM
from aaex_examples.supply_chain.job import FIELDS, JobError, interpret, parse_request

# (request, truth as (horizon_days, stores, trucks, truck_capacity, safety_stock_pct))
PHRASINGS: list[tuple[str, tuple[float, ...]]] = [
    ("Plan next week's replenishment for 20 stores from one depot with 3 trucks of 4,500 "
     "units each, keeping 10% safety stock.", (7, 20, 3, 4500, 10)),
    ("Next week: 12 stores, 2 trucks carrying 3000 units, 5% safety stock.",
     (7, 12, 2, 3000, 5)),
    ("We need to restock 30 stores next week using 4 vans with capacity of 5000 units; add "
     "15% safety stock.", (7, 30, 4, 5000, 15)),
    ("Replenish 8 stores tomorrow with 1 truck of 2,000 units.", (1, 8, 1, 2000, 0)),
    ("For the coming week, supply 25 stores. Fleet: 5 trucks, 6000 units each. Safety stock "
     "of 8%.", (7, 25, 5, 6000, 8)),
    ("Weekly plan, 40 stores, 6 vehicles with 7,500 units per truck, 12% safety.",
     (7, 40, 6, 7500, 12)),
    ("Please plan deliveries to 15 stores next week: 3 trucks, each carrying 4000 units, "
     "no safety stock.", (7, 15, 3, 4000, 0)),
    ("Next week we supply 50 stores from the depot; we have 8 trucks of 10,000 units and want "
     "20% safety stock.", (7, 50, 8, 10000, 20)),
    ("Stock up 10 stores next week. 2 trucks with capacity 3500 units. Safety stock 10%.",
     (7, 10, 2, 3500, 10)),
    ("Make a replenishment plan for next week covering 18 stores with 3 trucks of 5,000 "
     "units; safety stock 7%.", (7, 18, 3, 5000, 7)),
    ("Tomorrow: 6 stores, 1 van of 1500 units.", (1, 6, 1, 1500, 0)),
    ("Plan this week: 22 stores, 4 trucks, 4,800 units per truck, 10% safety stock.",
     (7, 22, 4, 4800, 10)),
    ("We run 35 stores. Next week, route 5 trucks with 9000 units each and keep 5% safety "
     "stock.", (7, 35, 5, 9000, 5)),
    ("Next week's job: 14 stores, 2 trucks carrying 6,500 units, 3% safety stock.",
     (7, 14, 2, 6500, 3)),
    ("Replenishment for next week, 28 stores, 4 vehicles of 5500 units, safety stock of 10%.",
     (7, 28, 4, 5500, 10)),
    ("Deliver to 9 stores next week with 2 trucks (capacity of 2500 units).",
     (7, 9, 2, 2500, 0)),
    ("Next week, 45 stores, 7 trucks of 8,000 units each, 25% safety stock please.",
     (7, 45, 7, 8000, 25)),
    ("Supply 16 stores tomorrow with 3 vans carrying 2000 units and 10% safety stock.",
     (1, 16, 3, 2000, 10)),
    ("Plan next week for 33 stores; 5 trucks with 7000 units per truck; 6% safety stock.",
     (7, 33, 5, 7000, 6)),
    ("For next week: 11 stores, 2 vehicles, 4,200 units each, safety stock 9%.",
     (7, 11, 2, 4200, 9)),
    ("Restock 24 stores next week with 4 trucks of 6,000 units and 12% safety stock.",
     (7, 24, 4, 6000, 12)),
    ("Next week 19 stores need goods; use 3 trucks with a capacity of 5,200 units; keep 4% "
     "safety stock.", (7, 19, 3, 5200, 4)),
]


def _score(values: dict[str, float] | None, truth: tuple[float, ...]) -> list[bool]:
    if values is None:
        return [False] * len(FIELDS)
    return [values.get(name) is not None and float(values[name]) == expected
            for name, expected in zip(FIELDS, truth, strict=True)]


async def run() -> dict[str, Any]:
    llm = await LlamaCppLLM.load()
    try:
        model_ok: list[list[bool]] = []
        rules_ok: list[list[bool]] = []
        final_ok: list[list[bool]] = []
        sources: dict[str, int] = {}
        for text, truth in PHRASINGS:
            try:
                interpretation = await interpret(llm, text)
            except JobError:  # neither the model (checked) nor the rules read a whole job
                for rows in (model_ok, rules_ok, final_ok):
                    rows.append([False] * len(FIELDS))
                sources["unread"] = sources.get("unread", 0) + 1
                continue
            try:
                proposed = json.loads(interpretation.raw) if interpretation.raw else None
            except ValueError:
                proposed = None
            model_ok.append(_score(proposed, truth))
            try:
                rules_ok.append(_score(parse_request(text).model_dump(), truth))
            except JobError:
                rules_ok.append([False] * len(FIELDS))
            final_ok.append(_score(interpretation.job.model_dump(), truth))
            sources[interpretation.source] = sources.get(interpretation.source, 0) + 1
    finally:
        await llm.aclose()
    n = len(PHRASINGS)

    def share(rows: list[list[bool]], column: int | None = None) -> float:
        cells = [row[column] for row in rows] if column is not None else \
            [all(row) for row in rows]
        return round(sum(cells) / n, 3)

    per_field = {name: {"model": share(model_ok, i), "rules": share(rules_ok, i),
                        "checked_job": share(final_ok, i)} for i, name in enumerate(FIELDS)}
    return {"bench": "job_reader", "phrasings": n, "model": llm.info.name,
            "whole_job_correct": {"model": share(model_ok), "rules": share(rules_ok),
                                  "checked_job": share(final_ok)},
            "per_field": per_field, "sources": sources, "python": platform.python_version()}


def main() -> int:
    result = asyncio.run(run())
    print(f"{result['phrasings']} phrasings of a replenishment job, read by "
          f"{result['model']}")
    print(f"{'field':<18}{'model':>8}{'rules':>8}{'checked':>9}")
    for name, row in result["per_field"].items():
        print(f"{name:<18}{row['model']:>8.0%}{row['rules']:>8.0%}{row['checked_job']:>9.0%}")
    whole = result["whole_job_correct"]
    print(f"{'whole job':<18}{whole['model']:>8.0%}{whole['rules']:>8.0%}"
          f"{whole['checked_job']:>9.0%}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
