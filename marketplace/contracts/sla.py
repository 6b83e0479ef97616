"""The SLA check: delivery facts plus agreed terms give a verdict and who gets what.

One pure function decides, so the buyer writing a receipt, the ledger settling it and any
third party auditing it reach the same verdict from the same numbers.

Money moves like this (the buyer's price is held in escrow on the buyer's books at
agreement; the penalty is a debt the seller owes on its own books, see docs/settlement.md):

=============  ================  ====================  ================================
verdict        seller gets       buyer gets            the seller owes the buyer
=============  ================  ====================  ================================
met            price             nothing               nothing
breached       nothing           price back            the penalty
not_delivered  nothing           price back            the penalty
=============  ================  ====================  ================================

A late result is a breach however late: the agreement priced the deadline, and a partial
payment scale would be a second negotiation nobody signed.

Per-token sales (`Terms.tokens` set): the agreed price is the cap the buyer escrowed. A met
delivery releases ``min(price, (input_tokens * input_per_1k + output_tokens *
output_per_1k) // 1000)`` (rounded down, in the buyer's favour) and refunds the rest. The
token counts and timings are the seller's, signed in its delivery; what the buyer checks
them against is in the `TokenUsage` too, so anyone recomputes the verdict:

- the output tokens cannot exceed the returned text's UTF-8 bytes plus `OUTPUT_SLACK`
  (no tokenizer makes a token of less than a byte, but an end token may carry no text),
  nor the agreed token cap;
- the input tokens cannot exceed the prompt's bytes (its canonical JSON, which grows with
  every message as a chat template does) plus `INPUT_SLACK` (a default system prompt);
- the time to first token and the decoding speed keep the agreed SLA.

Over-reporting is a breach like a late result: the seller gets nothing and owes its penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO, Credits

from .agreement import Agreement, TokenTerms

Verdict = Literal["met", "breached", "not_delivered"]
"""The outcome a receipt states."""


OUTPUT_SLACK = 2
"""Tokens a reported output may exceed its text's bytes by (end-of-text tokens)."""
INPUT_SLACK = 64
"""Tokens a reported prompt may exceed its bytes by (a chat template's default system turn)."""


def _unset(value: object) -> bool:
    return value is None


class TokenUsage(BaseModel):
    """A per-token delivery: the seller's signed counts and timings, the buyer's byte counts.

    The first four are what the seller's engine reported in its signed result; the byte
    counts are the buyer's own measurement of the prompt it sent and the text it got.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    ttft_ms: int = Field(ge=0)
    """Time to the first generated token."""
    generation_ms: int = Field(ge=0)
    """Time from the first generated token to the last."""
    input_bytes: int = Field(ge=0)
    """UTF-8 bytes of the prompt's canonical JSON (the task's messages)."""
    output_bytes: int = Field(ge=0)
    """UTF-8 bytes of the returned text."""


def token_cost(tokens: TokenTerms, usage: TokenUsage) -> Credits:
    """What `usage` costs at the agreed prices, rounded down to the micro-credit."""
    return (usage.input_tokens * tokens.input_per_1k
            + usage.output_tokens * tokens.output_per_1k) // 1000


def usage_breaches(tokens: TokenTerms, usage: TokenUsage) -> list[str]:
    """Every way `usage` breaks the per-token terms, in words; empty when it keeps them."""
    reasons = []
    if usage.output_tokens > usage.output_bytes + OUTPUT_SLACK:
        reasons.append(f"reports {usage.output_tokens} output tokens for {usage.output_bytes} "
                       "bytes of text (over-reported)")
    if usage.output_tokens > tokens.max_output_tokens:
        reasons.append(f"reports {usage.output_tokens} output tokens > the agreed cap "
                       f"{tokens.max_output_tokens}")
    if usage.input_tokens > usage.input_bytes + INPUT_SLACK:
        reasons.append(f"reports {usage.input_tokens} input tokens for a {usage.input_bytes}-"
                       "byte prompt (over-reported)")
    if usage.ttft_ms > tokens.max_ttft_ms:
        reasons.append(f"time to first token {usage.ttft_ms} ms > agreed {tokens.max_ttft_ms} ms")
    decoded = usage.output_tokens - 1
    if tokens.min_tokens_per_s and decoded > 0 \
            and decoded * 1000 < tokens.min_tokens_per_s * usage.generation_ms:
        speed = decoded * 1000 / max(1, usage.generation_ms)
        reasons.append(f"{speed:.1f} tokens/s < agreed {tokens.min_tokens_per_s} tokens/s")
    return reasons


class Delivery(BaseModel):
    """The delivery facts a receipt states: the result's hash and when the work ran.

    The times are the seller's, as it signed them in its delivery (clamped so the start is
    not before the agreement): both parties then state the same facts. The buyer's own
    observation only checks them (marketplace.contracts.dispute.timing_conflicts); when it
    contradicts them beyond the agreed tolerance, the buyer disputes instead of signing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    result_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    """sha256 (hex) of the result as received."""
    started_at_ms: int = Field(gt=0)
    finished_at_ms: int = Field(gt=0)
    usage: TokenUsage | None = Field(default=None, exclude_if=_unset)
    """For a per-token sale: the counts and timings it is billed and judged by."""


@dataclass(frozen=True, slots=True)
class SlaOutcome:
    """The verdict, the measurement behind it, and the three amounts it moves."""

    verdict: Verdict
    latency_ms: int | None
    """Measured latency; None when nothing was delivered."""
    release: Credits
    """Escrow paid to the seller."""
    refund: Credits
    """Escrow returned to the buyer."""
    penalty: Credits
    """What the seller owes the buyer."""
    reasons: tuple[str, ...] = ()
    """For a breach: which promise failed, in words."""


def check_sla(agreement: Agreement, delivery: Delivery | None) -> SlaOutcome:
    """Judge `delivery` (None: nothing arrived) against `agreement`'s terms.

    Raises:
        UsageError: the times are impossible (finished before started, or started before
            the agreement was made); a receipt built from them would be refused.
    """
    terms = agreement.terms
    if delivery is None:
        return SlaOutcome("not_delivered", None, release=ZERO, refund=terms.price,
                          penalty=terms.penalty, reasons=("no result arrived",))
    if delivery.started_at_ms < agreement.agreed_at_ms:
        raise UsageError(f"delivery started at {delivery.started_at_ms}, before the agreement "
                         f"was made at {agreement.agreed_at_ms}")
    if delivery.finished_at_ms < delivery.started_at_ms:
        raise UsageError(f"delivery finished at {delivery.finished_at_ms}, before it started "
                         f"at {delivery.started_at_ms}")
    latency = delivery.finished_at_ms - delivery.started_at_ms
    reasons = []
    if latency > terms.max_latency_ms:
        reasons.append(f"latency {latency} ms > agreed {terms.max_latency_ms} ms")
    if delivery.finished_at_ms > terms.deadline_ms:
        reasons.append(f"arrived {delivery.finished_at_ms - terms.deadline_ms} ms after the "
                       "deadline")
    if terms.tokens is not None:
        if delivery.usage is None:
            reasons.append("a per-token delivery must report its token usage")
        else:
            reasons.extend(usage_breaches(terms.tokens, delivery.usage))
    if reasons:
        return SlaOutcome("breached", latency, release=ZERO, refund=terms.price,
                          penalty=terms.penalty, reasons=tuple(reasons))
    if terms.tokens is not None and delivery.usage is not None:
        release = min(terms.price, token_cost(terms.tokens, delivery.usage))
        return SlaOutcome("met", latency, release=release, refund=terms.price - release,
                          penalty=ZERO)
    return SlaOutcome("met", latency, release=terms.price, refund=ZERO, penalty=ZERO)
