"""`Credits`: the one money type, integer micro-credits inside, from edge to edge.

Every amount the market moves — a budget, a price, a penalty, a hold, a balance — is a
`Credits`. Inside it is an integer count of micro-credits (`MICRO` per credit), so sums are
exact and every node computes the same bytes; its arithmetic is closed (credits plus
credits, credits times an integer) and a float never becomes money without a stated
rounding rule (`Credits.from_float`, used once where the concession maths hands back a
price). Text happens only at the edges: `Credits.parse` reads what a person types (``2.5``,
a TOML number, a CLI argument) and refuses what it would have to round; `str` writes it
back the same way. In a pydantic model a `Credits` field is its integer micro-credits on the
wire (msgpack, canonical JSON of signed contracts) and is read back from that integer only.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import total_ordering
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, GetCoreSchemaHandler
from pydantic_core import PydanticCustomError, core_schema

from .errors import UsageError

MICRO = 1_000_000
"""Micro-credits per credit."""
_PLACES = 6  # MICRO == 10 ** _PLACES
MAX_CREDITS = 10**9
"""The largest amount one typed operation takes: a typo of many zeros is an error instead
of an overflow deep in the books."""

Rounding = Literal["half_even", "down", "up"]
_ROUNDINGS = {"half_even": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}


@total_ordering
class Credits:
    """An amount of credits, held as integer micro-credits; immutable, exact, hashable.

    ``Credits(2_500_000)`` is 2.5 credits; ``Credits.parse("2.5")`` reads the same from text.
    """

    __slots__ = ("_micro",)

    def __init__(self, micro: int) -> None:
        if type(micro) is not int:
            raise UsageError(f"Credits takes an int of micro-credits, got {micro!r}; read "
                             "text with Credits.parse, a float with Credits.from_float")
        self._micro = micro

    @property
    def micro(self) -> int:
        """The amount in micro-credits."""
        return self._micro

    # -- edges ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, value: object, field: str = "amount", *, allow_zero: bool = False) -> Credits:
        """Decimal credits as a person writes them (``2.5``, ``"0.000001"``, ``10``).

        Refused, never rounded: text that is not a finite number, an amount finer than a
        micro-credit, one above `MAX_CREDITS`, and one not positive (zero too, unless
        `allow_zero`). A float is read through its shortest repr, so ``0.1`` is 100000
        micro-credits.

        Raises:
            UsageError: the message names `field` and what to write instead.
        """
        try:
            return _read_decimal(value, allow_zero=allow_zero)
        except ValueError as exc:
            raise UsageError(f"{field}: {exc}") from None

    @classmethod
    def from_float(cls, credits: float, *, rounding: Rounding) -> Credits:
        """A float number of credits (the concession maths' output), rounded as stated.

        ``half_even`` for a price both sides compute, ``down`` for what a buyer may pay at
        most, ``up`` for what a seller asks at least.

        Raises:
            UsageError: not a finite number.
        """
        if not math.isfinite(credits):
            raise UsageError(f"an amount of credits must be finite, got {credits!r}")
        micro = (Decimal(repr(credits)) * MICRO).quantize(Decimal(1),
                                                         rounding=_ROUNDINGS[rounding])
        return cls(int(micro))

    def __str__(self) -> str:
        """Decimal credits, exact, without trailing zeros: ``2.5``, ``-0.000001``, ``3``."""
        sign = "-" if self._micro < 0 else ""
        whole, fraction = divmod(abs(self._micro), MICRO)
        if fraction == 0:
            return f"{sign}{whole}"
        return f"{sign}{whole}.{fraction:0{_PLACES}d}".rstrip("0")

    def document(self, name: str) -> dict[str, Any]:
        """The amount for a JSON view: ``{name: "2.5", name + "_micro": 2500000}``."""
        return {name: str(self), f"{name}_micro": self._micro}

    # -- arithmetic -----------------------------------------------------------------------

    def __add__(self, other: Credits) -> Credits:
        if not isinstance(other, Credits):
            return NotImplemented
        return Credits(self._micro + other._micro)

    def __sub__(self, other: Credits) -> Credits:
        if not isinstance(other, Credits):
            return NotImplemented
        return Credits(self._micro - other._micro)

    def __neg__(self) -> Credits:
        return Credits(-self._micro)

    def __mul__(self, factor: int) -> Credits:
        if type(factor) is not int:
            return NotImplemented
        return Credits(self._micro * factor)

    __rmul__ = __mul__

    def __floordiv__(self, divisor: int) -> Credits:
        if type(divisor) is not int:
            return NotImplemented
        return Credits(self._micro // divisor)

    def __bool__(self) -> bool:
        return self._micro != 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Credits):
            return NotImplemented
        return self._micro == other._micro

    def __lt__(self, other: Credits) -> bool:
        if not isinstance(other, Credits):
            return NotImplemented
        return self._micro < other._micro

    def __hash__(self) -> int:
        return hash(("credits", self._micro))

    def __repr__(self) -> str:
        return f"Credits({self})"

    # -- pydantic: integer micro-credits on the wire -----------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_int = core_schema.no_info_after_validator_function(
            cls, core_schema.int_schema(strict=True))
        return core_schema.json_or_python_schema(
            json_schema=from_int,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls),
                                                    from_int]),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: value.micro, return_schema=core_schema.int_schema()))


ZERO = Credits(0)
ONE_CREDIT = Credits(MICRO)


def _not_negative(value: Credits) -> Credits:
    if value.micro < 0:
        raise ValueError(f"must be 0 or more micro-credits, got {value.micro}")
    return value


NonNegativeCredits = Annotated[Credits, AfterValidator(_not_negative)]
"""A `Credits` model field that refuses a negative amount (prices, holds, penalties)."""


def _read_decimal(value: object, *, allow_zero: bool) -> Credits:
    """`Credits.parse` without the field: raises ValueError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"write an amount of credits such as 2.5, got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"write a number of credits, e.g. 2.5 ({value!r} is not a "
                         "number)") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number of credits")
    if amount < 0 or (amount == 0 and not allow_zero):
        least = "0" if allow_zero else "more than 0"
        raise ValueError(f"must be {least} credits, got {value!r}")
    if amount > MAX_CREDITS:
        raise ValueError(f"{value!r} is more than {MAX_CREDITS} credits at once")
    micro = amount.scaleb(_PLACES)
    if micro != micro.to_integral_value():
        raise ValueError(f"{value!r} is finer than a micro-credit (at most {_PLACES} "
                         "decimals)")
    return Credits(int(micro))


def _decimal_credits(value: object) -> object:
    if isinstance(value, Credits):
        return value
    try:
        return _read_decimal(value, allow_zero=True)
    except ValueError as exc:  # this field's error, in the parser's words
        raise PydanticCustomError("credits", str(exc)) from None


DecimalCredits = Annotated[Credits, BeforeValidator(_decimal_credits)]
"""A `Credits` field read from decimal credits as a person writes them (``2.5``, ``"0.01"``):
for a configuration file or a form, never for the wire, where amounts are integers."""
