"""The replenishment job: what the planner is asked, read by the LLM and checked by rules.

A request arrives as a sentence ("Plan next week's replenishment for 20 stores from one depot
with 3 trucks of 4,500 units each, keeping 10% safety stock."). The planner asks its local
LLM for a `ReplenishmentJob` with decoding constrained to the job's JSON schema, then trusts
nothing it cannot check: every number the model gives must appear in the request, and where
the deterministic reader below also finds a field, both must agree. A field that fails either
check, or an answer that is not a job at all, falls back to the deterministic reading, and
the `Interpretation` says which fields came from where and why. A small model on a CPU gets
the shape right and the values often wrong; the job that reaches the market is right either
way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents.errors import AaexError, LLMError
from aaex_agents.llm import LLM, system, user


class JobError(AaexError, ValueError):
    """The request cannot be read as a replenishment job; the message says what is missing."""


class ReplenishmentJob(BaseModel):
    """One replenishment round: forecast demand, then route the deliveries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon_days: int = Field(ge=1, le=28, description="days ahead to plan, 7 for next week")
    stores: int = Field(ge=1, le=500, description="number of stores to supply")
    trucks: int = Field(ge=1, le=50, description="number of trucks available")
    truck_capacity: int = Field(ge=1, le=1_000_000, description="units one truck carries")
    safety_stock_pct: float = Field(default=0.0, ge=0, le=100,
                                    description="extra stock on top of forecast, in percent")


FIELDS = tuple(ReplenishmentJob.model_fields)

_NUMBER = r"(\d[\d,]*(?:\.\d+)?)"
_PATTERNS: dict[str, tuple[str, ...]] = {
    "stores": (_NUMBER + r"\s+(?:\w+\s+)?stores",),
    "trucks": (_NUMBER + r"\s+(?:\w+\s+)?(?:trucks?|vans?|vehicles?)\b",),
    "truck_capacity": (r"(?:of|with|carrying|capacity(?:\s+of)?)\s+" + _NUMBER + r"\s+units",
                       _NUMBER + r"\s+units\s+(?:each|per truck|capacity)"),
    "safety_stock_pct": (_NUMBER + r"\s*%\s+safety",
                         r"safety stock (?:of\s+)?" + _NUMBER + r"\s*%"),
    "horizon_days": (r"next\s+" + _NUMBER + r"\s+days", _NUMBER + r"[- ]day"),
}


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def read_request(text: str) -> dict[str, float]:
    """The fields a fixed set of patterns finds in `text` (deterministic, no model)."""
    lowered = text.lower()
    found: dict[str, float] = {}
    for name, patterns in _PATTERNS.items():
        for pattern in patterns:
            match = re.search(pattern, lowered)
            if match:
                found[name] = _number(match.group(1))
                break
    if "horizon_days" not in found:
        if re.search(r"next\s+week|weekly|this\s+week", lowered):
            found["horizon_days"] = 7.0
        elif re.search(r"tomorrow|next\s+day", lowered):
            found["horizon_days"] = 1.0
    return found


def parse_request(text: str) -> ReplenishmentJob:
    """Read `text` with the deterministic reader only.

    Raises:
        JobError: a required field (stores, trucks, truck capacity, horizon) is not found or
            out of range.
    """
    return _job(read_request(text))


REQUIRED = ("horizon_days", "stores", "trucks", "truck_capacity")


def _job(values: dict[str, float]) -> ReplenishmentJob:
    missing = [name for name in REQUIRED if name not in values]
    if missing:
        raise JobError(f"the request does not say {', '.join(missing)}: write e.g. 'next week, "
                       "20 stores, 3 trucks of 4500 units'")
    try:
        return ReplenishmentJob.model_validate(
            {k: (v if k == "safety_stock_pct" else int(v)) for k, v in values.items()})
    except ValueError as exc:
        raise JobError(f"the request's numbers are out of range: {exc}") from exc


@dataclass(frozen=True)
class Interpretation:
    """The job, and how it was obtained.

    Attributes:
        job: the validated job.
        source: "llm" (every field from the model), "mixed" or "fallback" (none).
        from_llm: the fields whose model value was accepted.
        notes: why each other field was not taken from the model.
        raw: the model's answer, as text (empty when it gave none).
    """

    job: ReplenishmentJob
    source: str
    from_llm: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    raw: str = ""


PROMPT = (
    "You turn a logistics request into JSON. Copy the numbers from the request. "
    "horizon_days is 7 for 'next week'. safety_stock_pct is the percentage of safety stock "
    "(0 if none). Example: 'next 14 days, 8 stores, 2 trucks of 900 units, 5% safety stock' "
    '-> {"horizon_days": 14, "stores": 8, "trucks": 2, "truck_capacity": 900, '
    '"safety_stock_pct": 5}'
)


async def interpret(llm: LLM | None, text: str, *, timeout: float = 60.0) -> Interpretation:
    """Read `text` into a job with the LLM, checked field by field (see the module doc).

    Raises:
        JobError: neither the model nor the deterministic reader gives a complete job.
    """
    rules = read_request(text)
    numbers = {_number(n) for n in re.findall(_NUMBER, text)}
    if llm is None:
        return Interpretation(_job(rules), "fallback", notes=("no LLM",))
    try:
        proposal = await llm.complete_json([system(PROMPT), user(text)],
                                           schema=ReplenishmentJob, max_tokens=96,
                                           timeout=timeout)
    except LLMError as exc:
        return Interpretation(_job(rules), "fallback",
                              notes=(f"model answer unusable: {exc}",),
                              raw=getattr(exc, "text", "") or "")
    values: dict[str, float] = dict(rules)
    accepted: list[str] = []
    notes: list[str] = []
    for name in FIELDS:
        given = float(getattr(proposal, name))
        grounded = given in numbers or (name == "horizon_days" and given == rules.get(name)) \
            or (name == "safety_stock_pct" and given == 0 and name not in rules)
        if not grounded:
            notes.append(f"{name}={given:g} does not appear in the request")
        elif name in rules and rules[name] != given:
            notes.append(f"{name}={given:g} disagrees with the request's {rules[name]:g}")
        else:
            values[name] = given
            accepted.append(name)
    source = "llm" if len(accepted) == len(FIELDS) else "mixed" if accepted else "fallback"
    return Interpretation(_job(values), source, tuple(accepted), tuple(notes),
                          proposal.model_dump_json())

