"""Commit-reveal of weights: a validator counts only with what it committed, revealed in time.

A validator first publishes a commitment, ``sha256(tag || validator || epoch || weights ||
salt)``, and reveals weights and salt only once every commitment is in. Until then nobody can
read its weights, so a copier can at best copy the *last* epoch's consensus (which Yuma 3's
bonds pay less for; see docs/consensus.md). At the epoch, each validator's row is:

- its revealed weights, if a reveal matches its commitment for this epoch and came inside
  the reveal window;
- a row of zeros otherwise: no commitment, no reveal, a reveal that does not hash to the
  commitment (forged), one for another epoch, one outside the window (early leaks weights
  before others committed; late could copy them), or weights of the wrong shape.

A zero row is what subtensor does with a validator that set no weights: its stake still
counts in the median (as a vote of zero), it earns no validator trust and its bonds decay.
Pure functions: the chain or the node that runs them decides where commitments live.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .errors import EpochInputError
from .fixed import U16_MAX

COMMIT_TAG = b"aaex.consensus.weights/1"
"""Domain separation: a weights commitment never collides with another sha256 of ours."""

MIN_SALT = 16
"""Bytes of salt at least: a shorter one lets anyone brute-force the weights out of a
commitment (u16 weights over few sellers are a small space) and copy them early."""


class RevealVerdict(enum.Enum):
    """Why a validator's row counted, or why it is a row of zeros."""

    COUNTED = "counted"
    NO_COMMITMENT = "no_commitment"
    NO_REVEAL = "no_reveal"
    FORGED = "forged"
    WRONG_EPOCH = "wrong_epoch"
    EARLY = "early"
    LATE = "late"
    MALFORMED = "malformed"


@dataclass(frozen=True, kw_only=True)
class Reveal:
    """A validator's reveal: the weights it committed to, the salt, and when it arrived."""

    validator: str
    """The validator's address, as in its commitment."""
    epoch: int
    """The epoch the weights are for."""
    weights: tuple[int, ...]
    """One u16 weight per seller."""
    salt: bytes
    """The secret mixed into the commitment, at least `MIN_SALT` bytes."""
    revealed_at: int
    """Block (or clock tick) at which the reveal was received, by the receiver's clock."""


def weights_commitment(validator: str, epoch: int, weights: Sequence[int], salt: bytes) -> bytes:
    """The 32-byte commitment to `weights` that `validator` publishes before revealing.

    Raises:
        EpochInputError: a weight outside u16, a negative epoch or a salt under 16 bytes.
    """
    if len(salt) < MIN_SALT:
        raise EpochInputError(f"weights_commitment: salt has {len(salt)} bytes; use at "
                              f"least {MIN_SALT} random bytes (secrets.token_bytes(32))")
    if epoch < 0 or any(type(w) is not int or not 0 <= w <= U16_MAX for w in weights):
        raise EpochInputError("weights_commitment: the epoch must be >= 0 and every weight "
                              "an int in [0, 65535]")
    name = validator.encode()
    digest = hashlib.sha256(COMMIT_TAG)
    digest.update(struct.pack(">H", len(name)) + name)
    digest.update(struct.pack(">QI", epoch, len(weights)))
    digest.update(struct.pack(f">{len(weights)}H", *weights))
    digest.update(salt)
    return digest.digest()


def check_reveal(commitment: bytes | None, reveal: Reveal | None, *, validator: str,
                 epoch: int, window: tuple[int, int], sellers: int) -> RevealVerdict:
    """Whether `reveal` is `validator`'s honest, timely reveal of `commitment` for `epoch`.

    `window` is the inclusive (opens, closes) range of `revealed_at` that counts.
    """
    if commitment is None:
        return RevealVerdict.NO_COMMITMENT
    if reveal is None or reveal.validator != validator:
        return RevealVerdict.NO_REVEAL
    if reveal.epoch != epoch:
        return RevealVerdict.WRONG_EPOCH
    if reveal.revealed_at < window[0]:
        return RevealVerdict.EARLY
    if reveal.revealed_at > window[1]:
        return RevealVerdict.LATE
    if len(reveal.weights) != sellers or len(reveal.salt) < MIN_SALT or any(
            type(w) is not int or not 0 <= w <= U16_MAX for w in reveal.weights):
        return RevealVerdict.MALFORMED
    expected = weights_commitment(validator, epoch, reveal.weights, reveal.salt)
    return RevealVerdict.COUNTED if expected == commitment else RevealVerdict.FORGED


def revealed_weights(validators: Sequence[str], commitments: Mapping[str, bytes],
                     reveals: Mapping[str, Reveal], *, epoch: int, window: tuple[int, int],
                     sellers: int) -> tuple[list[list[int]], dict[str, RevealVerdict]]:
    """The weights matrix for `yuma_epoch` (one row per validator) and each row's verdict.

    A row is the revealed weights when `check_reveal` says COUNTED, else zeros.
    """
    rows: list[list[int]] = []
    verdicts: dict[str, RevealVerdict] = {}
    for validator in validators:
        verdict = check_reveal(commitments.get(validator), reveals.get(validator),
                               validator=validator, epoch=epoch, window=window,
                               sellers=sellers)
        verdicts[validator] = verdict
        counted = verdict is RevealVerdict.COUNTED
        rows.append(list(reveals[validator].weights) if counted else [0] * sellers)
    return rows, verdicts
