"""Credits at the edge: what a person types and reads, exactly, against the books' micro-credits."""

from __future__ import annotations

import pytest

from aaex_agents.errors import UsageError
from marketplace.contracts import InsufficientFunds, format_credits, parse_credits


@pytest.mark.parametrize(("micro", "text"), [
    (0, "0"), (1, "0.000001"), (2_500_000, "2.5"), (1_000_001, "1.000001"),
    (-1_500_000, "-1.5"), (7_000_000, "7"), (123, "0.000123")])
def test_credits_read_as_decimals_without_trailing_zeros(micro: int, text: str) -> None:
    assert format_credits(micro) == text


@pytest.mark.parametrize(("typed", "micro"), [
    ("2.5", 2_500_000), (3, 3_000_000), (0.1, 100_000), (" 4 ", 4_000_000),
    ("0.000001", 1), ("1e2", 100_000_000)])
def test_typed_credits_become_exact_micro_credits(typed: object, micro: int) -> None:
    assert parse_credits(typed) == micro


@pytest.mark.parametrize(("typed", "why"), [
    ("abc", "is not a number"), (-1, "more than 0"), (0, "more than 0"), ("0", "more than 0"),
    ("0.0000001", "finer than a micro-credit"), ("nan", "not a finite"), ("inf", "not a finite"),
    (None, "write an amount"), (True, "write an amount"), ([1], "write an amount"),
    ("1e20", "more than 1000000000 credits")])
def test_a_bad_amount_is_refused_with_the_field_named(typed: object, why: str) -> None:
    with pytest.raises(UsageError, match=why) as caught:
        parse_credits(typed, "budget")
    assert str(caught.value).startswith("budget: ")


def test_insufficient_funds_speaks_credits() -> None:
    message = str(InsufficientFunds("aaex1someone", 2_500_000, 10, "credit"))
    assert "has 0.00001 credits available, 2.5 credits needed" in message
