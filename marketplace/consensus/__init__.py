"""Consensus: who the validators agree the good sellers are, and what each side earns.

    yuma     `yuma_epoch`, one epoch of Yuma consensus (classic or Yuma 3) as a pure function
    params   `YumaParams`, its hyperparameters with subtensor's names and defaults
    fixed    the fixed-point arithmetic (`ONE` = 2**32) that makes every node agree bit for bit
    reveal   commit-reveal of weights: a forged or late reveal counts as a row of zeros
    errors   `EpochInputError`

Sits between contracts and trade; imports nothing else from the marketplace.
"""

from .errors import EpochInputError
from .fixed import ONE
from .params import YumaParams
from .reveal import (
    Reveal,
    RevealVerdict,
    check_reveal,
    revealed_weights,
    weights_commitment,
)
from .yuma import EpochResult, reset_bonds, yuma_epoch

__all__ = [
    "ONE",
    "EpochInputError",
    "EpochResult",
    "Reveal",
    "RevealVerdict",
    "YumaParams",
    "check_reveal",
    "reset_bonds",
    "revealed_weights",
    "weights_commitment",
    "yuma_epoch",
]
