"""Keep only what a small model says that the facts back: no invented number reaches a report.

SmolLM2-135M writes fluent sentences with numbers it made up ("220 more trucks"). A provider's
explanation is therefore filtered sentence by sentence: a sentence survives only if every
number in it appears among the numbers of the facts the model was given (at the precision
the sentence writes it). A sentence without numbers is kept: it asserts no figure. What was
dropped is counted and kept beside the text, so the report shows what the model produced,
what was kept and what fell back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Grounded:
    """An explanation after the filter."""

    kept: str
    """The sentences whose every number is in the facts ("" when none survived)."""
    dropped: tuple[str, ...]
    """The sentences removed for an ungrounded number."""


def numbers_in(text: str) -> list[str]:
    """The numbers written in `text`, as written (thousands separators removed)."""
    return [m.group().replace(",", "").rstrip("%").lstrip("+") for m in _NUMBER.finditer(text)]


def _backed(number: str, facts: list[float]) -> bool:
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = float(number)
    return any(round(fact, decimals) == value or fact == value for fact in facts)


def ground(text: str, facts: str) -> Grounded:
    """Split `text` into sentences and keep those whose numbers all appear in `facts`."""
    known = [float(n) for n in numbers_in(facts)]
    kept: list[str] = []
    dropped: list[str] = []
    for sentence in (s.strip() for s in _SENTENCE.split(text.strip())):
        if not sentence:
            continue
        if all(_backed(n, known) for n in numbers_in(sentence)):
            kept.append(sentence)
        else:
            dropped.append(sentence)
    return Grounded(" ".join(kept), tuple(dropped))
