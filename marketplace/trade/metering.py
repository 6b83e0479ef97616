"""Metering a per-token delivery: the seller's signed counts against the buyer's bytes.

A language-model seller (`marketplace.trade.llm_seller.LlmSeller`) returns its answer as
``{"text": ..., "usage": {"input_tokens", "output_tokens", "ttft_ms", "generation_ms"}, ...}``
inside the result it signs, so the counts it bills are bound to its signature. The buyer adds
what it can measure itself, the bytes of the prompt it sent and of the text it got, and
`marketplace.contracts.sla.check_sla` judges the counts against those bounds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ..contracts.sla import TokenUsage

USAGE_FIELDS = ("input_tokens", "output_tokens", "ttft_ms", "generation_ms")
"""What a per-token result's ``usage`` reports, as the seller's engine counted it."""


def prompt_bytes(task: Mapping[str, Any]) -> int:
    """UTF-8 bytes of the task's messages as canonical JSON: the prompt's upper bound."""
    messages = task.get("messages", [])
    return len(json.dumps(messages, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode())


def metered_usage(task: Mapping[str, Any], result: Mapping[str, Any]) -> TokenUsage | None:
    """The usage a per-token delivery is judged by; None when the result reports none.

    None makes the delivery a breach (a per-token sale must report what it bills).
    """
    reported, text = result.get("usage"), result.get("text")
    if not isinstance(reported, Mapping) or not isinstance(text, str):
        return None
    counts: dict[str, int] = {}
    for name in USAGE_FIELDS:
        value = reported.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        counts[name] = value
    try:
        return TokenUsage(**counts, input_bytes=prompt_bytes(task),
                          output_bytes=len(text.encode()))
    except ValidationError:
        return None
