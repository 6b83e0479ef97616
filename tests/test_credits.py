"""`Credits`, the one money type: exact integer micro-credits, closed arithmetic, text only at
the edges, integers on the wire."""

from __future__ import annotations

import msgpack
import pytest
from pydantic import BaseModel, ValidationError

from aaex_agents import Credits, Message
from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO, DecimalCredits, NonNegativeCredits
from marketplace.contracts import InsufficientFunds


@pytest.mark.parametrize(("micro", "text"), [
    (0, "0"), (1, "0.000001"), (2_500_000, "2.5"), (1_000_001, "1.000001"),
    (-1_500_000, "-1.5"), (7_000_000, "7"), (123, "0.000123")])
def test_credits_read_as_decimals_without_trailing_zeros(micro: int, text: str) -> None:
    assert str(Credits(micro)) == text
    assert Credits(micro).document("price") == {"price": text, "price_micro": micro}


@pytest.mark.parametrize(("typed", "micro"), [
    ("2.5", 2_500_000), (3, 3_000_000), (0.1, 100_000), (" 4 ", 4_000_000),
    ("0.000001", 1), ("1e2", 100_000_000)])
def test_typed_credits_become_exact_micro_credits(typed: object, micro: int) -> None:
    assert Credits.parse(typed) == Credits(micro)


@pytest.mark.parametrize(("typed", "why"), [
    ("abc", "is not a number"), (-1, "more than 0"), (0, "more than 0"), ("0", "more than 0"),
    ("0.0000001", "finer than a micro-credit"), ("nan", "not a finite"), ("inf", "not a finite"),
    (None, "write an amount"), (True, "write an amount"), ([1], "write an amount"),
    ("1e20", "more than 1000000000 credits")])
def test_a_bad_amount_is_refused_with_the_field_named(typed: object, why: str) -> None:
    with pytest.raises(UsageError, match=why) as caught:
        Credits.parse(typed, "budget")
    assert str(caught.value).startswith("budget: ")


def test_arithmetic_is_closed_and_exact() -> None:
    a, b = Credits.parse("0.1"), Credits.parse("0.2")
    assert a + b == Credits.parse("0.3") == Credits(300_000)  # 0.1 + 0.2 is 0.3 here
    assert b - a == a and -a == Credits(-100_000) and a * 3 == 3 * a == Credits(300_000)
    assert Credits(1_000_001) // 2 == Credits(500_000)
    assert sorted([b, a, ZERO]) == [ZERO, a, b] and max(a, b) is b
    assert not ZERO and a and {a: 1}[Credits(100_000)] == 1
    for mixed in (lambda: a + 1, lambda: a * 1.5, lambda: a < 1, lambda: a // 0.5):
        with pytest.raises(TypeError):
            mixed()
    assert a != 100_000  # an int is no amount
    with pytest.raises(UsageError, match="int of micro-credits"):
        Credits(1.5)  # type: ignore[arg-type]


def test_a_float_becomes_money_only_with_a_stated_rounding() -> None:
    assert Credits.from_float(0.0000015, rounding="half_even") == Credits(2)
    assert Credits.from_float(0.0000025, rounding="half_even") == Credits(2)
    assert Credits.from_float(0.0000019, rounding="down") == Credits(1)
    assert Credits.from_float(0.0000011, rounding="up") == Credits(2)
    with pytest.raises(UsageError):
        Credits.from_float(float("nan"), rounding="down")


class Priced(BaseModel):
    price: NonNegativeCredits


class Typed(BaseModel):
    budget: DecimalCredits


class Quote(Message, type="test_credits.quote/1"):
    price: Credits


def test_models_carry_integer_micro_credits_and_read_back_only_integers() -> None:
    priced = Priced(price=Credits(2_500_000))
    assert priced.model_dump() == {"price": 2_500_000}
    assert priced.model_dump_json() == '{"price":2500000}'
    assert Priced.model_validate_json('{"price":2500000}') == priced
    assert Priced.model_validate({"price": 2_500_000}) == priced
    for bad in (2.5, "2.5", True, -1):  # a float, text or a negative amount is refused
        with pytest.raises(ValidationError):
            Priced.model_validate({"price": bad})
    assert msgpack.unpackb(msgpack.packb(Quote(price=Credits(7)).model_dump())) == {"price": 7}


def test_configuration_reads_decimal_credits() -> None:
    assert Typed(budget="2.5").budget == Typed(budget=2.5).budget == Credits(2_500_000)
    assert Typed(budget=100).budget == Credits(100_000_000)
    with pytest.raises(ValidationError, match="finer than a micro-credit"):
        Typed(budget="0.0000001")


def test_insufficient_funds_speaks_credits() -> None:
    message = str(InsufficientFunds("aaex1someone", Credits(2_500_000), Credits(10), "credit"))
    assert "has 0.00001 credits available, 2.5 credits needed" in message
