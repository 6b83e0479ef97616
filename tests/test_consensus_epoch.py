"""`yuma_epoch`'s contract: exact integers, the same bytes everywhere, one-line refusals."""

from __future__ import annotations

import decimal
import hashlib
import math
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import marketplace.consensus as consensus
from marketplace.consensus import (
    ONE,
    EpochInputError,
    Reveal,
    RevealVerdict,
    YumaParams,
    check_reveal,
    weights_commitment,
    yuma_epoch,
)
from marketplace.consensus.fixed import sigmoid_table

YUMA3 = YumaParams(yuma3_enabled=True, liquid_alpha_enabled=True)


def _random_epoch(seed: int, validators: int = 12, sellers: int = 40) -> tuple[
        list[int], list[list[int]], list[list[int]]]:
    rng = random.Random(seed)  # noqa: S311 - seeded test data, not a secret
    stake = [rng.randrange(1, 10**12) for _ in range(validators)]
    weights = [[rng.choice((0, rng.randrange(65_536))) for _ in range(sellers)]
               for _ in range(validators)]
    bonds = [[rng.randrange(ONE // 2) for _ in range(sellers)] for _ in range(validators)]
    return stake, weights, bonds


def _digest(result: consensus.EpochResult) -> str:
    fields = (result.consensus, result.incentive, result.dividends, result.validator_trust,
              result.ranks, result.bonds, result.active_stake)
    return hashlib.sha256(repr(fields).encode()).hexdigest()


def test_the_public_surface() -> None:
    assert {"ONE", "EpochInputError", "EpochResult", "Reveal", "RevealVerdict", "YumaParams",
            "check_reveal", "reset_bonds", "revealed_weights", "weights_commitment",
            "yuma_epoch"} <= set(consensus.__all__)
    assert all(hasattr(consensus, name) for name in consensus.__all__)


def test_the_docs_example_runs() -> None:
    """docs/consensus.md's example is code that runs, with the numbers it states."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "consensus.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks
    exec(compile(blocks[0], "docs/consensus.md", "exec"), {})  # noqa: S102 - our own docs


def test_params_default_to_subtensors_runtime() -> None:
    params = YumaParams()
    assert (params.kappa, params.bonds_moving_average, params.bonds_penalty) == (
        32_767, 900_000, 65_535)
    assert (params.liquid_alpha_enabled, params.alpha_low, params.alpha_high) == (
        False, 45_875, 58_982)
    assert (params.alpha_sigmoid_steepness, params.yuma3_enabled, params.activity_cutoff) == (
        1_000, False, 5_000)


def test_every_output_is_an_integer_and_the_bytes_are_pinned() -> None:
    """The same inputs give the same bytes: pinned, so a change of rounding is a decision."""
    stake, weights, bonds = _random_epoch(1)
    digests = {}
    for name, params in (("classic", YumaParams()), ("yuma3", YUMA3),
                         ("two_sided", YumaParams(two_sided_clip=True, bonds_penalty=30_000))):
        first, again = (yuma_epoch(stake, weights, bonds, params) for _ in range(2))
        assert first == again
        for vector in (first.consensus, first.incentive, first.dividends, first.ranks,
                       first.validator_trust, *first.bonds):
            assert all(type(x) is int for x in vector)
        digests[name] = _digest(first)[:16]
    assert digests == {"classic": "c8eb2e5bf314597b", "yuma3": "80b370c5bf86d7cc",
                       "two_sided": "c1b5a34899d43fc7"}


def test_shares_sum_to_one_and_stay_in_range() -> None:
    stake, weights, bonds = _random_epoch(2)
    for params in (YumaParams(), YUMA3):
        result = yuma_epoch(stake, weights, bonds, params)
        for shares in (result.incentive, result.dividends, result.active_stake):
            assert ONE - len(shares) <= sum(shares) <= ONE
        assert all(0 <= t <= ONE for t in result.validator_trust)
        assert all(0 <= b <= ONE for row in result.bonds for b in row)
        assert repr(result) == "<EpochResult validators=12 sellers=40>"


def test_the_median_counts_a_stake_exactly_at_kappa() -> None:
    """Validators weighting a seller 1 hold exactly kappa (32767/65535): its consensus is 1."""
    result = yuma_epoch([32_768, 32_767], [[0, 65_535], [65_535, 0]], [[0, 0]] * 2)
    assert result.consensus == (ONE, ONE)
    one_less = yuma_epoch([32_769, 32_766], [[0, 65_535], [65_535, 0]], [[0, 0]] * 2)
    assert one_less.consensus == (0, ONE)


def test_the_two_sided_clip_raises_weights_to_the_lower_quantile_for_ranks_only() -> None:
    """Four equal validators weight seller 0 at 0.2, 0.4, 0.6, 0.8 (seller 1 gets the rest).

    Consensus (upper kappa-quantile) is 0.6 and the lower one 0.4: one-sided, ranks average
    min(w, 0.6) = 0.45; two-sided, they average clamp(w, 0.4, 0.6) = 0.5. Trust is the same.
    """
    weights = [[13_107, 52_428], [26_214, 39_321], [39_321, 26_214], [52_428, 13_107]]
    one = yuma_epoch([1] * 4, weights, [[0, 0]] * 4)
    two = yuma_epoch([1] * 4, weights, [[0, 0]] * 4, YumaParams(two_sided_clip=True))
    assert [round(c / ONE, 4) for c in one.consensus] == [0.6, 0.6]
    assert [round(r / ONE, 4) for r in one.ranks] == [0.45, 0.45]
    assert [round(r / ONE, 4) for r in two.ranks] == [0.5, 0.5]
    assert one.validator_trust == two.validator_trust and one.bonds == two.bonds


def test_idle_validators_lose_their_stake_for_the_epoch() -> None:
    stake, weights = [50, 50], [[65_535, 0], [0, 65_535]]
    idle = yuma_epoch(stake, weights, [[0, 0]] * 2, last_update=[10, 4_000], block=9_000)
    assert idle.active_stake == (0, ONE)
    assert idle.incentive == (0, ONE)
    both = yuma_epoch(stake, weights, [[0, 0]] * 2, last_update=[4_011, 4_000], block=9_000)
    assert both.active_stake == (ONE // 2, ONE // 2)


def test_no_validators_or_no_sellers_is_an_empty_epoch() -> None:
    empty = yuma_epoch([], [], [], YUMA3)
    assert (empty.consensus, empty.dividends, empty.bonds) == ((), (), ())
    nobody = yuma_epoch([5, 5], [[], []], [[], []], YUMA3)
    assert nobody.consensus == () and nobody.dividends == (0, 0)


@pytest.mark.parametrize(("stake", "weights", "bonds", "kwargs", "words"), [
    ([1, 2], [[1, 2]], [[0, 0]] * 2, {}, "one row per validator"),
    ([1], [[1, 2]], [[0]], {}, "bonds[0] has 1 sellers"),
    ([1], [[1.5, 2]], [[0, 0]], {}, "weights[0] holds 1.5, not an int"),
    ([1], [[1, 70_000]], [[0, 0]], {}, "weights[0] has a value outside [0, 65535]"),
    ([1], [[1, 2]], [[0, ONE + 1]], {}, "bonds[0] has a value outside"),
    ([-1], [[1, 2]], [[0, 0]], {}, "stake has a value outside"),
    ([1], [[1, 2]], [[0, 0]], {"last_update": [3]}, "last_update and block go together"),
    ([1], [[1, 2]], [[0, 0]], {"recycled": [2]}, "recycled has a value outside [0, 1]"),
])
def test_bad_input_is_refused_with_one_line_naming_it(
        stake: list[int], weights: list[list[float]], bonds: list[list[int]],
        kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(EpochInputError, match=r"^yuma_epoch: ") as caught:
        yuma_epoch(stake, weights, bonds, **kwargs)  # type: ignore[arg-type]
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("field", "value"), [
    ("kappa", 70_000), ("bonds_moving_average", 1_000_001), ("alpha_low", -1),
    ("alpha_sigmoid_steepness", 40_000), ("yuma3_enabled", 1), ("alpha_low", 60_000)])
def test_params_out_of_range_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(EpochInputError, match=rf"^YumaParams\.{field}: "):
        YumaParams(**{field: value})  # type: ignore[arg-type]


def test_the_sigmoid_table_is_the_sigmoid() -> None:
    for steepness in (1_000, -300, 32_767):
        table = sigmoid_table(steepness)
        assert len(table) == 65_537
        assert table[32_768] == ONE // 2  # exp(0) exactly
        for k in range(0, 65_537, 997):
            exponent = max(-20.0, min(20.0, -steepness / 100 * (k / 65_536 - 0.5)))
            assert abs(table[k] / ONE - 1 / (1 + math.exp(exponent))) < 1e-9, (steepness, k)


def test_the_sigmoid_table_ignores_the_callers_decimal_context() -> None:
    """A caller's decimal precision or rounding never leaks into the table."""
    reference = sigmoid_table(1_000)
    sigmoid_table.cache_clear()
    with decimal.localcontext() as context:
        context.prec, context.rounding = 3, decimal.ROUND_CEILING
        assert sigmoid_table(1_000) == reference


def test_a_reveal_is_checked_for_epoch_window_shape_and_salt() -> None:
    salt = bytes(range(32))
    digest = weights_commitment("v", 3, [1, 2], salt)
    assert digest != weights_commitment("w", 3, [1, 2], salt)  # bound to the validator
    assert digest != weights_commitment("v", 4, [1, 2], salt)  # and to the epoch

    def verdict(**changes: object) -> RevealVerdict:
        fields: dict[str, object] = {"validator": "v", "epoch": 3, "weights": (1, 2),
                                     "salt": salt, "revealed_at": 50}
        fields.update(changes)
        return check_reveal(digest, Reveal(**fields), validator="v", epoch=3,  # type: ignore[arg-type]
                            window=(40, 60), sellers=2)

    assert verdict() is RevealVerdict.COUNTED
    assert verdict(epoch=2) is RevealVerdict.WRONG_EPOCH
    assert verdict(revealed_at=39) is RevealVerdict.EARLY
    assert verdict(revealed_at=61) is RevealVerdict.LATE
    assert verdict(weights=(1, 2, 3)) is RevealVerdict.MALFORMED
    assert verdict(weights=(1, 70_000)) is RevealVerdict.MALFORMED
    assert verdict(salt=salt[:-1] + b"x") is RevealVerdict.FORGED
    assert verdict(validator="w") is RevealVerdict.NO_REVEAL
    assert check_reveal(None, None, validator="v", epoch=3, window=(0, 9),
                        sellers=2) is RevealVerdict.NO_COMMITMENT
    with pytest.raises(EpochInputError, match="salt has 8 bytes"):
        weights_commitment("v", 3, [1, 2], b"12345678")


Epoch = tuple[list[int], list[list[int]], list[list[int]], list[int], list[int]]


@st.composite
def _epochs(draw: st.DrawFn) -> Epoch:
    """Stake, weights and bonds, and a relabelling of the validators and of the sellers."""
    validators = draw(st.integers(1, 6))
    sellers = draw(st.integers(1, 6))
    # small stakes too: with hypothesis's wide integers one validator often outweighs the rest
    stake = draw(st.lists(st.integers(1, 8) | st.integers(0, 10**15), min_size=validators,
                          max_size=validators))
    weights = draw(st.lists(st.lists(st.integers(0, 65_535), min_size=sellers,
                                     max_size=sellers), min_size=validators,
                            max_size=validators))
    bonds = draw(st.lists(st.lists(st.integers(0, ONE), min_size=sellers, max_size=sellers),
                          min_size=validators, max_size=validators))
    rows = draw(st.permutations(range(validators)))
    cols = draw(st.permutations(range(sellers)))
    return stake, weights, bonds, rows, cols


@settings(max_examples=80, deadline=None)
@given(_epochs(), st.sampled_from([YumaParams(), YUMA3, YumaParams(two_sided_clip=True)]))
def test_the_order_of_validators_and_sellers_changes_nothing(epoch: Epoch,
                                                             params: YumaParams) -> None:
    """Relabel validators and sellers: every output is the same numbers, relabelled, exactly.

    No tie-break, rounding or sum in the epoch depends on who is listed first.
    """
    stake, weights, bonds, rows, cols = epoch
    base = yuma_epoch(stake, weights, bonds, params)
    moved = yuma_epoch([stake[i] for i in rows], [[weights[i][j] for j in cols] for i in rows],
                       [[bonds[i][j] for j in cols] for i in rows], params)
    assert moved.consensus == tuple(base.consensus[j] for j in cols)
    assert moved.incentive == tuple(base.incentive[j] for j in cols)
    assert moved.ranks == tuple(base.ranks[j] for j in cols)
    assert moved.dividends == tuple(base.dividends[i] for i in rows)
    assert moved.validator_trust == tuple(base.validator_trust[i] for i in rows)
    assert moved.bonds == tuple(tuple(base.bonds[i][j] for j in cols) for i in rows)
    assert all(0 <= b <= ONE for row in base.bonds for b in row)
    assert sum(base.incentive) <= ONE and sum(base.dividends) <= ONE
