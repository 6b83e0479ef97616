"""The parameters of one Yuma epoch, named and defaulted as subtensor names and defaults them."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import EpochInputError
from .fixed import U16_MAX


@dataclass(frozen=True, kw_only=True)
class YumaParams:
    """Hyperparameters of a Yuma epoch; defaults are subtensor's runtime defaults.

    Integers keep subtensor's units so a subnet's settings copy over unchanged: u16 fractions
    of 65,535 for kappa, the bonds penalty and the alpha bounds, parts per million for the
    bonds moving average, hundredths for the sigmoid steepness, blocks for the activity cutoff.

    Example::

        YumaParams(yuma3_enabled=True, liquid_alpha_enabled=True,
                   alpha_low=6553, alpha_high=19660)   # subtensor's Yuma 3 test subnet
    """

    kappa: int = 32_767
    """Majority ratio of the stake-weighted median, /65535 (0.5): a seller's consensus weight
    is the highest weight that validators holding at least kappa of the stake give it."""
    bonds_moving_average: int = 900_000
    """Bonds EMA memory, per million (0.9): without liquid alpha, alpha = 1 - this."""
    bonds_penalty: int = U16_MAX
    """How far bonds follow clipped instead of raw weights, /65535 (1.0: fully clipped)."""
    liquid_alpha_enabled: bool = False
    """Per-cell EMA speed from a sigmoid of how far a weight runs ahead of consensus."""
    alpha_low: int = 45_875
    """Liquid alpha's lower bound, /65535 (0.7)."""
    alpha_high: int = 58_982
    """Liquid alpha's upper bound, /65535 (0.9)."""
    alpha_sigmoid_steepness: int = 1_000
    """Liquid alpha's sigmoid steepness in hundredths (10.0), signed as subtensor's i16."""
    yuma3_enabled: bool = False
    """Yuma 3 (subtensor, May 2025): bonds are per-validator proportions bought at liquid
    alpha, dividends weigh each validator's bond share by its stake. Off: classic Yuma."""
    activity_cutoff: int = 5_000
    """Blocks after its last weights update that a validator still counts (stake masked)."""
    two_sided_clip: bool = False
    """Not in subtensor: also raise weights below a seller's lower consensus (the kappa
    quantile from below) when computing ranks, so a stake minority cannot pull a seller
    down either. Validator trust and bonds still use the one-sided clip."""

    def __post_init__(self) -> None:
        for name in ("kappa", "bonds_penalty", "alpha_low", "alpha_high"):
            _check_range(name, getattr(self, name), 0, U16_MAX)
        _check_range("bonds_moving_average", self.bonds_moving_average, 0, 1_000_000)
        _check_range("alpha_sigmoid_steepness", self.alpha_sigmoid_steepness, -32_768, 32_767)
        _check_range("activity_cutoff", self.activity_cutoff, 0, 2**64 - 1)
        if self.alpha_low > self.alpha_high:
            raise EpochInputError(
                f"YumaParams.alpha_low: {self.alpha_low} is above alpha_high "
                f"{self.alpha_high}; give alpha_low <= alpha_high (both /65535)")
        for name in ("liquid_alpha_enabled", "yuma3_enabled", "two_sided_clip"):
            if not isinstance(getattr(self, name), bool):
                raise EpochInputError(f"YumaParams.{name}: {getattr(self, name)!r} is not a "
                                      "bool; pass True or False")


def _check_range(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EpochInputError(f"YumaParams.{name}: {value!r} is not an integer in "
                              f"[{low}, {high}]; subtensor's unit for it is documented on "
                              "the field")
