"""What Yuma consensus does against the attacks a marketplace of strangers will see, in numbers.

Each test states the attack, runs real epochs of `yuma_epoch` and asserts what the attacker
gets. docs/consensus.md quotes these numbers.
"""

from __future__ import annotations

import random
import secrets

from marketplace.consensus import (
    ONE,
    Reveal,
    RevealVerdict,
    YumaParams,
    reset_bonds,
    revealed_weights,
    weights_commitment,
    yuma_epoch,
)
from marketplace.consensus.fixed import to_u16

YUMA3 = YumaParams(yuma3_enabled=True, liquid_alpha_enabled=True)
HONEST = [40_000, 30_000, 20_000, 10_000, 5_000, 0]  # five real sellers, the cabal's is last
CABAL = [0, 0, 0, 0, 0, 65_535]


def _run(stake: list[int], rounds: list[list[list[int]]], params: YumaParams,
         sellers: int) -> tuple[list[int], object]:
    """Dividends summed over the epochs of `rounds`, and the last epoch's result."""
    bonds = [[0] * sellers for _ in stake]
    totals = [0] * len(stake)
    result = None
    for weights in rounds:
        result = yuma_epoch(stake, weights, bonds, params)
        bonds = [list(row) for row in result.bonds]
        totals = [t + d for t, d in zip(totals, result.dividends, strict=True)]
    return totals, result


def test_a_cabal_of_30_percent_gets_its_seller_nothing() -> None:
    """7 honest validators (70 % of stake) give the cabal's seller 0; 3 (30 %) give it all."""
    stake = [10] * 10
    weights = [HONEST] * 7 + [CABAL] * 3
    for params in (YumaParams(), YUMA3):
        totals, last = _run(stake, [weights] * 5, params, 6)
        assert last is not None
        assert last.consensus[5] == 0
        assert last.incentive[5] == 0  # X = 0: not one unit of the sellers' emission
        assert last.validator_trust[7:] == (0, 0, 0)
        assert totals[7:] == [0, 0, 0]  # and the cabal's validators earn no dividends
        assert abs(sum(last.incentive[:5]) - ONE) <= 5


def test_a_cabal_hiding_in_honest_weights_still_lifts_nothing() -> None:
    """Half its weight copies the honest row, half goes to its seller: still 0 incentive."""
    mixed = [h // 2 for h in HONEST[:5]] + [32_768]
    result = yuma_epoch([10] * 10, [HONEST] * 7 + [mixed] * 3, [[0] * 6] * 10, YUMA3)
    assert result.incentive[5] == 0
    # what it spent on its own seller was clipped away; the honest-looking rest is its trust
    assert abs(result.validator_trust[9] / ONE - 52_500 / 85_268) < 1e-6


def test_a_cabal_with_more_than_half_of_the_stake_decides() -> None:
    """The documented limit: 52 % of the stake makes its seller the consensus."""
    result = yuma_epoch([10] * 5 + [11] * 5, [HONEST] * 5 + [CABAL] * 5, [[0] * 6] * 10, YUMA3)
    assert result.incentive[5] == ONE
    assert result.consensus[:5] == (0, 0, 0, 0, 0)


def _noisy_honest(seed: int) -> list[list[int]]:
    """7 honest validators who agree within 5 % on sellers worth 0.4, 0.25, 0.2 and 0.15."""
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not a secret
    return [[int(65_535 * worth * rng.uniform(0.95, 1.05)) for worth in (0.4, 0.25, 0.2, 0.15)]
            for _ in range(7)]


def test_down_weighting_the_best_seller_two_sided_clip_keeps_it_within_3_percent() -> None:
    """30 % of the stake gives the best seller 0 and inflates the others by half."""
    attack = [[0, 24_575, 19_660, 14_745]] * 3
    for seed in range(5):
        honest = _noisy_honest(seed)
        for two_sided, low, high in ((False, 0.20, 0.23), (True, 0.0, 0.03)):
            params = YumaParams(two_sided_clip=two_sided)
            fair = yuma_epoch([10] * 7, honest, [[0] * 4] * 7, params)
            hit = yuma_epoch([10] * 10, honest + attack, [[0] * 4] * 10, params)
            drop = (fair.incentive[0] - hit.incentive[0]) / fair.incentive[0]
            assert low <= drop <= high, (seed, two_sided, drop)
            # the median itself barely moves either way: the loss comes from the ranks
            assert abs(hit.consensus[0] - fair.consensus[0]) / fair.consensus[0] <= 0.03


def test_a_copier_of_last_epochs_consensus_earns_less_than_honest_validators() -> None:
    """Commit-reveal leaves a copier only the previous epoch's consensus to copy.

    Six honest validators and one copier, equal stake; the best of four sellers changes every
    four epochs. Over 24 epochs the copier earns 65 % of an honest validator's dividends with
    Yuma 3 and liquid alpha, 53 % with plain Yuma 3, 19 % with classic Yuma.
    """
    stake = [10] * 7
    for params, low, high in ((YUMA3, 0.60, 0.70), (YumaParams(yuma3_enabled=True), 0.50, 0.56),
                              (YumaParams(), 0.15, 0.22)):
        bonds = [[0] * 4 for _ in stake]
        totals = [0] * 7
        previous: tuple[int, ...] = (0, 0, 0, 0)
        for epoch in range(24):
            honest = [65_535 if j == (epoch // 4) % 4 else 0 for j in range(4)]
            copied = [to_u16(c) for c in previous]
            result = yuma_epoch(stake, [honest] * 6 + [copied], bonds, params)
            bonds = [list(row) for row in result.bonds]
            previous = result.consensus
            totals = [t + d for t, d in zip(totals, result.dividends, strict=True)]
        ratio = totals[6] / totals[0]
        assert low <= ratio <= high, (params, ratio)


def test_a_copier_in_a_market_that_never_changes_earns_what_honest_ones_do() -> None:
    """The honest limit of the copier result: with nothing to lag behind, copying is free."""
    honest = [40_000, 25_000, 0, 0]
    stake = [10] * 7
    first = yuma_epoch(stake, [honest] * 7, [[0] * 4] * 7, YUMA3)
    copied = [to_u16(c) for c in first.consensus]
    totals, _ = _run(stake, [[honest] * 6 + [copied]] * 10, YUMA3, 4)
    assert abs(totals[6] / totals[0] - 1) < 0.01


def test_splitting_stake_across_keys_gains_nothing() -> None:
    """A validator with 30 of 100 stake runs as three keys of 10 with the same weights."""
    rng = random.Random(3)  # noqa: S311 - seeded test data, not a secret
    others = [[rng.randrange(65_536) for _ in range(5)] for _ in range(4)]
    mine = [rng.randrange(65_536) for _ in range(5)]
    whole_stake, split_stake = [30, 25, 20, 15, 10], [10, 10, 10, 25, 20, 15, 10]
    for params in (YumaParams(), YUMA3):
        whole_totals, whole = _run(whole_stake, [[mine, *others]] * 6, params, 5)
        split_totals, split = _run(split_stake, [[mine] * 3 + others] * 6, params, 5)
        assert whole is not None and split is not None
        # what the network decides about sellers is the same to the last bit
        assert split.consensus == whole.consensus
        assert split.ranks == whole.ranks
        assert split.incentive == whole.incentive
        assert split.validator_trust[:3] == (whole.validator_trust[0],) * 3
        gained = sum(split_totals[:3]) - whole_totals[0]
        if params.yuma3_enabled:
            # bonds are per key, not per stake: more keys share each bond column, so
            # splitting loses (here 7 % of its dividends); it never gains
            assert -0.08 < gained / whole_totals[0] < -0.06
        else:
            assert abs(gained) < 100  # classic: the same, to 100 units of 2**-32 in 6 epochs


def test_a_recycled_seller_slot_inherits_no_bonds() -> None:
    """Slot 1 held large bonds; a newcomer takes it over: it starts from zero bonds."""
    stake = [10, 10, 10]
    weights = [[32_768, 32_767]] * 3
    held = [[ONE // 2, ONE * 9 // 10], [ONE // 2, ONE // 10], [ONE // 2, ONE // 10]]
    for params in (YumaParams(), YUMA3):
        fresh = yuma_epoch(stake, weights, [[ONE // 2, 0]] * 3, params)
        recycled = yuma_epoch(stake, weights, held, params, recycled=[1])
        inherited = yuma_epoch(stake, weights, held, params)
        assert [row[1] for row in recycled.bonds] == [row[1] for row in fresh.bonds]
        assert recycled.bonds != inherited.bonds
        assert reset_bonds(held, 1) == ((ONE // 2, 0),) * 3
    # equal weights buy equal bonds: no trace is left of validator 0's old 0.9
    column = [row[1] for row in yuma_epoch(stake, weights, held, YUMA3, recycled=[1]).bonds]
    assert len(set(column)) == 1


def test_forged_and_late_reveals_count_as_zero_weights() -> None:
    """Four validators commit; one reveals other weights, one reveals late, one never does."""
    names = ["honest", "forger", "late", "silent"]
    real = [65_535, 0, 0]
    salts = {name: secrets.token_bytes(32) for name in names}
    commitments = {name: weights_commitment(name, 7, real, salts[name]) for name in names}
    reveals = {
        "honest": Reveal(validator="honest", epoch=7, weights=tuple(real), salt=salts["honest"],
                         revealed_at=105),
        "forger": Reveal(validator="forger", epoch=7, weights=(0, 0, 65_535),
                         salt=salts["forger"], revealed_at=105),
        "late": Reveal(validator="late", epoch=7, weights=tuple(real), salt=salts["late"],
                       revealed_at=111),
    }
    rows, verdicts = revealed_weights(names, commitments, reveals, epoch=7, window=(100, 110),
                                      sellers=3)
    assert verdicts == {"honest": RevealVerdict.COUNTED, "forger": RevealVerdict.FORGED,
                        "late": RevealVerdict.LATE, "silent": RevealVerdict.NO_REVEAL}
    assert rows == [real, [0, 0, 0], [0, 0, 0], [0, 0, 0]]
    # the forger holds 60 % of the stake: its forged row would have made seller 2 the
    # consensus; counted as zeros, it moves nothing
    stake = [40, 60, 10, 10]
    result = yuma_epoch(stake, rows, [[0] * 3] * 4, YUMA3)
    assert result.incentive[2] == 0 and result.validator_trust[1] == 0
    counted = yuma_epoch(stake, [real, [0, 0, 65_535], *rows[2:]], [[0] * 3] * 4, YUMA3)
    assert counted.incentive[2] == ONE
    # an honest majority's reveals carry the epoch as if nobody had cheated
    result = yuma_epoch([70, 10, 10, 10], rows, [[0] * 3] * 4, YUMA3)
    assert result.incentive == (ONE, 0, 0) and result.validator_trust[0] == ONE
