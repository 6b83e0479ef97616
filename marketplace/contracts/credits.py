"""Credits as a person reads and types them; micro-credits as the books keep them.

The ledger counts integer micro-credits (`MINOR_UNITS` per credit) so that it adds up
exactly. A person reads and types decimal credits: ``2.5``, not ``2500000``. These two
functions are the only conversions at that edge, and both are exact: no float ever
carries an amount an operator typed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from aaex_agents.errors import UsageError

MINOR_UNITS = 1_000_000
"""Smallest units per whole unit of a currency: prices are micro-credits."""

_PLACES = 6  # MINOR_UNITS == 10 ** _PLACES
MAX_CREDITS = 10**9
"""The largest amount one operation takes: far from SQLite's 64-bit integers, so a typo
of many zeros is an error instead of an overflow deep in the books."""


def format_credits(micro: int) -> str:
    """``2500000`` -> ``"2.5"``: decimal credits, exact, without trailing zeros."""
    sign = "-" if micro < 0 else ""
    whole, fraction = divmod(abs(micro), MINOR_UNITS)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{fraction:0{_PLACES}d}".rstrip("0")


def parse_credits(value: object, field: str = "amount") -> int:
    """A positive amount of credits (a number or a decimal string) in micro-credits.

    An amount finer than a micro-credit is refused, not rounded: rounding would move money
    nobody typed. A float is read through its shortest repr, so ``0.1`` is 100000.

    Raises:
        UsageError: `value` is missing, not a number, not finite, not positive, above
            `MAX_CREDITS` or finer than a micro-credit; the message names `field`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise UsageError(f"{field}: write an amount of credits such as 2.5, got {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise UsageError(f"{field}: {value!r} is not a number of credits; write e.g. "
                         "2.5") from None
    if not amount.is_finite():
        raise UsageError(f"{field}: {value!r} is not a finite number of credits")
    if amount <= 0:
        raise UsageError(f"{field}: must be more than 0 credits, got {value!r}")
    if amount > MAX_CREDITS:
        raise UsageError(f"{field}: {value!r} is more than {MAX_CREDITS} credits at once")
    micro = amount.scaleb(_PLACES)
    if micro != micro.to_integral_value():
        raise UsageError(f"{field}: {value!r} is finer than a micro-credit (at most "
                         f"{_PLACES} decimals)")
    return int(micro)
