"""One Yuma epoch as a pure function of stake, weights and bonds: `yuma_epoch`.

Validators are rows, sellers are columns. The steps are subtensor's (`epoch/run_epoch.rs`,
re-derived, not translated; the commit read is named in docs/consensus.md):

1. stake of inactive validators (no weights within `activity_cutoff` blocks) counts zero;
2. each validator's weights are normalized to sum to one;
3. a seller's consensus is the highest weight that validators holding kappa of the active
   stake give it at least (a stake-weighted quantile), and weights above it are clipped;
4. ranks are the stake-weighted sums of clipped weights; incentive is ranks normalized;
5. bonds move toward the (penalty-interpolated) clipped weights by an exponential moving
   average: classic Yuma buys bonds in proportion to stake and normalizes each seller's
   column; Yuma 3 keeps each validator's bond as its own proportion, bought at a per-cell
   liquid alpha, and pays dividends by bond share times stake.

Everything is integer arithmetic (see `fixed`): the same inputs give the same bytes out on
every node. Rounding differs from subtensor's I32F32 in the last bits: 1e-9 on its classic
trace, within the 4 decimals of its Yuma 3 tables (docs/consensus.md).
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat

from .errors import EpochInputError
from .fixed import ONE, U16_MAX, alpha_table, u16_fraction
from .params import YumaParams

Matrix = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class EpochResult:
    """What one epoch decides; every number is fixed point (`ONE` = 1.0).

    Vectors over sellers have M entries, over validators V; `bonds` is V x M and is what the
    next epoch takes as its `bonds` input.
    """

    consensus: tuple[int, ...]
    """Per seller: the stake-weighted kappa-quantile of the validators' weights (M)."""
    incentive: tuple[int, ...]
    """Per seller: its share of the sellers' emission, ranks normalized to sum to ONE (M)."""
    dividends: tuple[int, ...]
    """Per validator: its share of the validators' emission, summing to ONE (V)."""
    validator_trust: tuple[int, ...]
    """Per validator: the sum of its weights after clipping at consensus, at most ONE (V)."""
    ranks: tuple[int, ...]
    """Per seller: the active-stake-weighted sum of clipped weights, before normalizing (M)."""
    bonds: Matrix
    """The new bonds (V x M): Yuma 3, each a proportion in [0, ONE]; classic, each column
    max-upscaled so its largest bond is ONE (as subtensor stores them)."""
    active_stake: tuple[int, ...]
    """Per validator: the stake that counted, normalized to sum to ONE (V)."""

    def __repr__(self) -> str:
        return (f"<EpochResult validators={len(self.dividends)} "
                f"sellers={len(self.consensus)}>")


def yuma_epoch(stake: Sequence[int], weights: Sequence[Sequence[int]],
               bonds: Sequence[Sequence[int]], params: YumaParams | None = None, *,
               last_update: Sequence[int] | None = None, block: int | None = None,
               recycled: Sequence[int] = ()) -> EpochResult:
    """Compute one epoch of Yuma consensus; a pure, exact function of its inputs.

    Args:
        stake: Per validator (V), a non-negative integer (e.g. micro-credits staked).
        weights: V x M non-negative integers up to 65,535 (a validator's row is normalized;
            subtensor stores u16 weights). A forged or late reveal is a row of zeros.
        bonds: V x M fixed-point bonds from the previous epoch's `EpochResult.bonds` (all
            zeros at the start), each in [0, ONE].
        params: Hyperparameters; `YumaParams()` is subtensor's defaults (classic Yuma).
        last_update: Per validator, the block of its last weights; with `block`, validators
            idle for more than `params.activity_cutoff` blocks have their stake masked.
        block: The current block (required with `last_update`).
        recycled: Seller columns whose slot was re-registered since the last epoch: their
            bonds are dropped before the epoch, so a newcomer inherits none.

    Returns:
        The epoch's consensus, incentive, dividends, validator trust, ranks and new bonds.

    Raises:
        EpochInputError: a shape, a type or a range is wrong; nothing was computed.
    """
    params = params or YumaParams()
    rows, cols = _check_inputs(stake, weights, bonds, last_update, block, recycled)
    active = _active_stake(stake, params, last_update, block)
    w = [_normalize_row(row) for row in weights]
    consensus, lower = _consensus(w, active, params.kappa, cols)
    clipped = [list(map(min, row, consensus)) for row in w]
    trust = tuple(sum(row) for row in clipped)
    rank_rows = ([list(map(min, map(max, row, lower), consensus)) for row in w]
                 if params.two_sided_clip else clipped)
    raw_ranks = _stake_weighted_sums(rank_rows, active, cols)
    total_active = sum(active)
    ranks = tuple(r // total_active if total_active else 0 for r in raw_ranks)
    incentive = _normalize(raw_ranks)
    for_bonds = _weights_for_bonds(w, clipped, params.bonds_penalty)
    old = reset_bonds(bonds, set(recycled)) if recycled else bonds
    if params.yuma3_enabled:
        new_bonds, dividends = _yuma3_bonds(for_bonds, old, consensus, incentive, active,
                                            params)
    else:
        new_bonds, dividends = _classic_bonds(for_bonds, old, incentive, active, params)
    return EpochResult(
        consensus=tuple(consensus), incentive=incentive, dividends=dividends,
        validator_trust=trust, ranks=ranks,
        bonds=tuple(tuple(row) for row in new_bonds) if rows else (),
        active_stake=_normalize(active))


def reset_bonds(bonds: Sequence[Sequence[int]], column: int | set[int]) -> Matrix:
    """`bonds` with one seller's column (or a set of them) zeroed: the slot was recycled.

    Subtensor does this when a bonds-reset subnet's slot changes hands (`do_reset_bonds`)
    and masks the columns of sellers registered since the last epoch; `yuma_epoch`'s
    `recycled` argument does the latter, this the former at any time.
    """
    columns = {column} if isinstance(column, int) else column
    return tuple(tuple(0 if j in columns else b for j, b in enumerate(row)) for row in bonds)


def _active_stake(stake: Sequence[int], params: YumaParams,
                  last_update: Sequence[int] | None, block: int | None) -> list[int]:
    if last_update is None or block is None:
        return list(stake)
    return [s if updated + params.activity_cutoff >= block else 0
            for s, updated in zip(stake, last_update, strict=True)]


def _normalize_row(row: Sequence[int]) -> list[int]:
    total = sum(row)
    return [x * ONE // total for x in row] if total else [0] * len(row)


def _normalize(values: Sequence[int]) -> tuple[int, ...]:
    total = sum(values)
    return tuple(v * ONE // total for v in values) if total else tuple(0 for _ in values)


def _consensus(w: list[list[int]], stake: list[int], kappa: int,
               cols: int) -> tuple[list[int], list[int]]:
    """Per seller, the upper and lower stake-weighted kappa-quantiles of its column.

    Upper (the consensus): the highest weight x such that validators weighting it x or more
    hold at least kappa of the stake; subtensor's `weighted_median_col`, compared exactly in
    integers. Lower: the lowest x such that validators weighting it x or less hold kappa.
    """
    voters = [i for i, s in enumerate(stake) if s > 0]
    total = sum(stake)
    if not voters or cols == 0:
        return [0] * cols, [0] * cols
    scaled = [s * U16_MAX for s in stake]
    upper_bar = (U16_MAX - kappa) * total  # cumulative from below must pass it
    lower_bar = kappa * total
    upper, lower = [], []
    columns = list(zip(*(w[i] for i in voters), strict=True))
    weights = [scaled[i] for i in voters]
    positions = range(len(voters))
    last = len(voters) - 1
    for column in columns:
        order = sorted(positions, key=column.__getitem__)
        cumulative = list(accumulate(map(weights.__getitem__, order)))
        # first position whose cumulative stake passes the bar (C-level bisect, no loop)
        upper.append(column[order[min(bisect_right(cumulative, upper_bar), last)]])
        lower.append(column[order[min(bisect_left(cumulative, lower_bar), last)]])
    return upper, lower


def _stake_weighted_sums(rows: list[list[int]], stake: list[int], cols: int) -> list[int]:
    """Per column, the exact sum over rows of value times raw stake (no rounding)."""
    sums = [0] * cols
    for row, s in zip(rows, stake, strict=True):
        if s:
            sums = list(map(operator.add, sums, map(operator.mul, row, repeat(s))))
    return sums


def _weights_for_bonds(w: list[list[int]], clipped: list[list[int]],
                       penalty: int) -> list[list[int]]:
    """Weights interpolated toward clipped by the bonds penalty (1.0: clipped, 0: raw)."""
    if penalty == U16_MAX:
        return clipped
    if penalty == 0:
        return w
    ratio = u16_fraction(penalty)
    return [[x - ((x - c) * ratio >> 32) for x, c in zip(row, crow, strict=True)]
            for row, crow in zip(w, clipped, strict=True)]


def _yuma3_bonds(w: list[list[int]], old: Sequence[Sequence[int]], consensus: list[int],
                 incentive: tuple[int, ...], stake: list[int],
                 params: YumaParams) -> tuple[list[list[int]], tuple[int, ...]]:
    """Yuma 3: each bond moves toward the validator's own weight; dividends by bond share.

    B'[i][j] = min(1, (1 - a) * B[i][j] + a * W[i][j]) with a per-cell liquid alpha when it
    is on (and some consensus is non-zero), else a = 1 - bonds_moving_average.
    Dividend of i is stake[i] * sum_j (B'[i][j] / sum_k B'[k][j]) * incentive[j], normalized.
    """
    if params.liquid_alpha_enabled and any(consensus):
        table = alpha_table(params.alpha_sigmoid_steepness, u16_fraction(params.alpha_low),
                            u16_fraction(params.alpha_high))
        new = [_liquid_ema_row(wrow, brow, consensus, table)
               for wrow, brow in zip(w, old, strict=True)]
    else:
        alpha = ONE - params.bonds_moving_average * ONE // 1_000_000
        keep = ONE - alpha
        new = [[(keep * b + alpha * x) >> 32 for x, b in zip(wrow, brow, strict=True)]
               for wrow, brow in zip(w, old, strict=True)]
    column_sums = _column_sums(new, len(consensus))
    share = [inc * ONE // total if total else 0
             for inc, total in zip(incentive, column_sums, strict=True)]
    per_validator = [s * (sum(map(operator.mul, row, share)) >> 32)
                     for row, s in zip(new, stake, strict=True)]
    return new, _normalize(per_validator)


def _liquid_ema_row(wrow: list[int], brow: Sequence[int], consensus: list[int],
                    table: list[int]) -> list[int]:
    """One validator's bonds after a liquid-alpha EMA step (subtensor's `alpha_sigmoid`).

    The alpha of a cell grows with how far the weight runs ahead of consensus (buying) or
    the bond runs ahead of the weight (selling), read from `table` at 2**-16 steps.
    """
    # diff: how far the weight runs ahead of consensus (buying) or the bond ahead of the
    # weight (selling); both lie in [0, ONE], so the EMA stays in [0, ONE] without a clamp.
    return [((ONE - (a := table[((x - c if x > c else 0) if x >= b else b - x) >> 16])) * b
             + a * x) >> 32 if x or b else 0
            for x, b, c in zip(wrow, brow, consensus, strict=True)]


def _classic_bonds(w: list[list[int]], old: Sequence[Sequence[int]],
                   incentive: tuple[int, ...],
                   stake: list[int],
                   params: YumaParams) -> tuple[list[list[int]], tuple[int, ...]]:
    """Classic Yuma: bonds bought in proportion to stake, each seller's column sums to one.

    B' = normalize_columns(a * normalize_columns(W * stake) + (1 - a) * normalize_columns(B))
    with a = 1 - bonds_moving_average; dividend of i is sum_j B'[i][j] * incentive[j],
    normalized; the stored bonds are B' with each column scaled so its largest entry is ONE.
    The outer normalization cancels the inner ones' denominators, so each column is one
    exact integer numerator per cell, divided once: fewer roundings than subtensor's.
    """
    cols = len(incentive)
    alpha = ONE - params.bonds_moving_average * ONE // 1_000_000
    keep = ONE - alpha
    bought = [list(map(operator.mul, row, repeat(s))) for row, s in zip(w, stake, strict=True)]
    bought_sums, held_sums = _column_sums(bought, cols), _column_sums(old, cols)
    # per column, numerator = a * bought * sum(held) + (1 - a) * held * sum(bought); where
    # one side is empty the other alone remains (subtensor's normalize leaves zeros as zeros)
    new_weight = [alpha * h if b and h else (1 if b else 0)
                  for b, h in zip(bought_sums, held_sums, strict=True)]
    old_weight = [keep * b if b and h else (0 if b else 1)
                  for b, h in zip(bought_sums, held_sums, strict=True)]
    numerators = [list(map(operator.add, map(operator.mul, drow, new_weight),
                           map(operator.mul, hrow, old_weight)))
                  for drow, hrow in zip(bought, old, strict=True)]
    totals = [t or 1 for t in _column_sums(numerators, cols)]  # a zero column stays zero
    ema = [_scale_columns(row, totals) for row in numerators]
    dividends = _normalize([sum(map(operator.mul, row, incentive)) >> 32 for row in ema])
    peaks = [max(column) or 1 for column in zip(*ema, strict=True)] if ema and cols else []
    stored = [_scale_columns(row, peaks) for row in ema]
    return stored, dividends


def _scale_columns(row: list[int], divisors: list[int]) -> list[int]:
    """floor(x * ONE / divisor) per cell, in chained C-level maps."""
    return list(map(operator.floordiv, map(operator.mul, row, repeat(ONE)), divisors))


def _column_sums(rows: Sequence[Sequence[int]], cols: int) -> list[int]:
    sums = [0] * cols
    for row in rows:
        sums = list(map(operator.add, sums, row))
    return sums




def _check_inputs(stake: Sequence[int], weights: Sequence[Sequence[int]],
                  bonds: Sequence[Sequence[int]], last_update: Sequence[int] | None,
                  block: int | None, recycled: Sequence[int]) -> tuple[int, int]:
    """The shape (V, M) of a well-formed input; raises `EpochInputError` naming the fault."""
    rows = len(stake)
    if len(weights) != rows or len(bonds) != rows:
        raise EpochInputError(
            f"yuma_epoch: stake has {rows} validators but weights has {len(weights)} rows "
            f"and bonds {len(bonds)}; give one row per validator in each")
    cols = len(weights[0]) if rows else 0
    _check_vector("stake", stake, 0, None)
    for name, matrix, high in (("weights", weights, U16_MAX), ("bonds", bonds, ONE)):
        for i, row in enumerate(matrix):
            if len(row) != cols:
                raise EpochInputError(
                    f"yuma_epoch: {name}[{i}] has {len(row)} sellers, row 0 has {cols}; "
                    "every row needs one entry per seller")
            _check_vector(f"{name}[{i}]", row, 0, high)
    if (last_update is None) != (block is None):
        raise EpochInputError("yuma_epoch: last_update and block go together; pass both "
                              "to mask idle validators, or neither")
    if last_update is not None:
        if len(last_update) != rows:
            raise EpochInputError(f"yuma_epoch: last_update has {len(last_update)} entries "
                                  f"for {rows} validators")
        _check_vector("last_update", last_update, 0, None)
        _check_vector("block", [block or 0], 0, None)
    _check_vector("recycled", recycled, 0, cols - 1)
    return rows, cols


def _check_vector(name: str, values: Sequence[int], low: int, high: int | None) -> None:
    # a float, Fraction or numpy integer anywhere makes the sum's type something else
    if values and type(sum(values)) is not int:
        bad = next((v for v in values if type(v) not in (int, bool)), values[0])
        raise EpochInputError(f"yuma_epoch: {name} holds {bad!r}, not an int; the epoch is "
                              "integer arithmetic (scale fractions by ONE)")
    if values and (min(values) < low or (high is not None and max(values) > high)):
        raise EpochInputError(
            f"yuma_epoch: {name} has a value outside [{low}, {high if high is not None else 'inf'}]"
            f": {min(values)}..{max(values)}")
