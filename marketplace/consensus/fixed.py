"""Fixed-point numbers for the consensus: integers scaled by `ONE` = 2**32, floor rounding.

Every node must compute the same epoch from the same inputs, byte for byte, so nothing in
the consensus touches a float. A proportion p in [0, 1] is the integer ``floor(p * ONE)``
(subtensor uses I32F32, the same 32 fractional bits); a product of two of them is shifted
back down once, a quotient is scaled up before the integer division, and every rounding is
a floor of a non-negative number. Where an exact rational comparison is possible (the
stake-weighted median, the ranks) the code compares integers instead and rounds nothing.

The only transcendental function, the sigmoid of liquid alpha, is a table of 65,537 entries
built from at most four `decimal` exponentials (correctly rounded at 60 digits, so the same
everywhere) and an integer recurrence: the same on every machine and Python version, and
cheap to index per cell.
"""

from __future__ import annotations

import decimal
import functools

ONE = 1 << 32
"""1.0 in the consensus' fixed point: a proportion p is ``floor(p * ONE)``."""

U16_MAX = 65_535
"""Subtensor's u16 scale: kappa, bonds penalty and the alpha bounds are fractions of it."""

_TABLE_BITS = 16
"""The sigmoid's input is read at 2**-16 steps (a u16 weight's resolution): 65,537 entries."""

_STEPS = 1 << _TABLE_BITS
_GUARD = 96
"""Fractional bits of the exponential recurrence: 65,536 floors lose < 2**-79 relative."""

_EXP_LIMIT = 20
"""Subtensor clamps the sigmoid's exponent to [-20, 20] (`exp_safe`); so do we."""


def u16_fraction(value: int) -> int:
    """`value`/65535 as a fixed-point proportion (kappa, bonds penalty, alpha bounds)."""
    return value * ONE // U16_MAX


def to_u16(value: int) -> int:
    """A fixed-point proportion as subtensor stores it: ``floor(p * 65535)``."""
    return value * U16_MAX // ONE


def from_u16(value: int) -> int:
    """A stored u16 proportion read back to fixed point, as subtensor reads its bonds."""
    return value * ONE // U16_MAX


def _exp_scaled(numerator: int, denominator: int) -> int:
    """``floor(exp(numerator / denominator) * 2**_GUARD)`` through `decimal`.

    `decimal` computes `exp` correctly rounded (half-even) at the context's precision on every
    platform, so the few exponentials the sigmoid table needs are the same everywhere.
    """
    context = decimal.Context(prec=60, rounding=decimal.ROUND_FLOOR)
    value = context.exp(context.divide(decimal.Decimal(numerator), decimal.Decimal(denominator)))
    return int(context.multiply(value, decimal.Decimal(1 << _GUARD)).to_integral_value(
        rounding=decimal.ROUND_FLOOR))


@functools.lru_cache(maxsize=8)
def sigmoid_table(steepness: int) -> tuple[int, ...]:
    """``1 / (1 + exp(-steepness/100 * (k/65536 - 1/2)))`` in fixed point, for k = 0..65536.

    This is subtensor's liquid-alpha sigmoid (`alpha_sigmoid`) with its input read at 2**-16
    steps. The exponent is linear in k, so exp at k+1 is exp at k times one constant: a few
    `decimal` exponentials and an integer multiply per entry build the whole table.
    """
    # exponent(k) = steepness * (65536 - 2k) / (100 * 131072), an exact rational
    denominator = 100 * 2 * _STEPS
    limit = _EXP_LIMIT * denominator

    def numerator(k: int) -> int:
        return steepness * (_STEPS - 2 * k)

    ratio = _exp_scaled(-2 * steepness, denominator)  # exp(exponent(k+1) - exponent(k))
    high, low = _exp_scaled(limit, denominator), _exp_scaled(-limit, denominator)
    scale = 1 << _GUARD
    table = []
    current: int | None = None
    for k in range(_STEPS + 1):
        exponent = numerator(k)
        if exponent > limit:
            e, current = high, None
        elif exponent < -limit:
            e, current = low, None
        else:
            current = (_exp_scaled(exponent, denominator) if current is None
                       else current * ratio >> _GUARD)
            e = current
        table.append((ONE << _GUARD) // (scale + e))
    return tuple(table)


def alpha_table(steepness: int, alpha_low: int, alpha_high: int) -> list[int]:
    """Liquid alpha for each 2**-16 step of the combined difference, clamped to [low, high].

    `alpha_low` and `alpha_high` are fixed-point proportions.
    """
    span = alpha_high - alpha_low
    out = []
    for sig in sigmoid_table(steepness):
        alpha = alpha_low + (sig * span >> 32)
        out.append(max(min(alpha, alpha_high), alpha_low))
    return out
