"""Where validators meet: stakes, sellers, weight commitments, reveals and attestations.

`Board` is what a validator needs from the chain, on one screen; the chain client
(an on-chain contract) is the shared one, `MemoryBoard` the in-process one that tests and a
single operator use. `ConsensusBook` holds what the last epoch decided, per capability,
for the market to read (`Delegator`'s award blends it with receipt reputation).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aaex_agents.clock import Clock

from .errors import EpochInputError
from .fixed import ONE
from .reveal import Reveal
from .yuma import EpochResult


class Board(Protocol):
    """The shared record of one validator set (the chain, or `MemoryBoard`)."""

    async def stakes(self) -> dict[str, int]:
        """Validator address -> stake (micro-credits) that votes in the current epoch."""
        ...

    async def sellers(self, capability: str) -> list[str]:
        """The registered sellers of `capability`, in the order every weights row uses."""
        ...

    async def commit(self, capability: str, epoch: int, validator: str,
                     commitment: bytes) -> None:
        """Record `validator`'s weights commitment (`weights_commitment`) for `epoch`."""
        ...

    async def reveal(self, capability: str, reveal: Reveal) -> None:
        """Record a reveal; the board stamps `revealed_at` with its own clock."""
        ...

    async def revealed(self, capability: str,
                       epoch: int) -> tuple[dict[str, bytes], dict[str, Reveal]]:
        """The epoch's commitments and reveals, by validator."""
        ...

    async def attest(self, capability: str, epoch: int, validator: str, digest: bytes) -> None:
        """Record the hash of the epoch's outputs as `validator` computed them."""
        ...


@dataclass
class MemoryBoard:
    """An in-process `Board`: one operator's validators, or tests. Time is `clock`'s.

    Its methods are `Board`'s; only the first commitment and the first reveal of a
    validator for an epoch count (no re-commit after seeing others' reveals).
    """

    clock: Clock
    staked: dict[str, int] = field(default_factory=dict)
    registered: dict[str, list[str]] = field(default_factory=dict)
    commitments: dict[tuple[str, int], dict[str, bytes]] = field(default_factory=dict)
    reveals: dict[tuple[str, int], dict[str, Reveal]] = field(default_factory=dict)
    attestations: dict[tuple[str, int], dict[str, bytes]] = field(default_factory=dict)

    async def stakes(self) -> dict[str, int]:
        """Validators with a positive stake."""
        return {v: s for v, s in self.staked.items() if s > 0}

    async def sellers(self, capability: str) -> list[str]:
        """The sellers registered for `capability`."""
        return list(self.registered.get(capability, []))

    async def commit(self, capability: str, epoch: int, validator: str,
                     commitment: bytes) -> None:
        """Keep the first commitment of `validator` for the epoch."""
        # The first commitment counts: a validator cannot re-commit after seeing reveals.
        self.commitments.setdefault((capability, epoch), {}).setdefault(validator, commitment)

    async def reveal(self, capability: str, reveal: Reveal) -> None:
        """Keep the first reveal, stamped with this board's clock."""
        stamped = Reveal(validator=reveal.validator, epoch=reveal.epoch,
                         weights=reveal.weights, salt=reveal.salt,
                         revealed_at=int(self.clock.now()))
        self.reveals.setdefault((capability, reveal.epoch), {}).setdefault(
            reveal.validator, stamped)

    async def revealed(self, capability: str,
                       epoch: int) -> tuple[dict[str, bytes], dict[str, Reveal]]:
        """The epoch's commitments and reveals."""
        return (dict(self.commitments.get((capability, epoch), {})),
                dict(self.reveals.get((capability, epoch), {})))

    async def attest(self, capability: str, epoch: int, validator: str, digest: bytes) -> None:
        """Keep `validator`'s latest attestation for the epoch."""
        self.attestations.setdefault((capability, epoch), {})[validator] = digest


def outputs_digest(sellers: Sequence[str], validators: Sequence[str],
                   result: EpochResult) -> bytes:
    """sha256 of an epoch's outputs in a fixed encoding: what validators attest to."""
    digest = hashlib.sha256(b"aaex.consensus.outputs/1")
    for names in (sellers, validators):
        digest.update(struct.pack(">I", len(names)))
        for name in names:
            raw = name.encode()
            digest.update(struct.pack(">H", len(raw)) + raw)
    for vector in (result.consensus, result.incentive, result.dividends,
                   *result.bonds):
        digest.update(struct.pack(f">I{len(vector)}Q", len(vector), *vector))
    return digest.digest()


@dataclass(frozen=True)
class Standing:
    """What one epoch decided about one capability's sellers."""

    epoch: int
    incentive: Mapping[str, int]
    """Seller -> incentive, fixed point (`ONE` = the whole emission)."""

    def quality(self, seller: str) -> float | None:
        """`seller`'s incentive relative to the best seller's, in [0, 1]; None if unseen."""
        if seller not in self.incentive:
            return None
        best = max(self.incentive.values())
        return self.incentive[seller] / best if best > 0 else 0.0


KEPT_EPOCHS = 64
"""Epochs of standings a `ConsensusBook` keeps per capability (older ones are dropped)."""


class ConsensusBook:
    """The consensus per capability and epoch, as this node's validators computed it.

    The latest `KEPT_EPOCHS` epochs are kept for ``aaex consensus show --epoch N``.
    """

    def __init__(self) -> None:
        self._standings: dict[str, dict[int, Standing]] = {}

    def record(self, capability: str, epoch: int, sellers: Sequence[str],
               result: EpochResult) -> None:
        """Keep `result` as `capability`'s standing for `epoch` (the first one recorded)."""
        if len(sellers) != len(result.incentive):
            raise EpochInputError(f"ConsensusBook.record: {len(sellers)} sellers but "
                                  f"{len(result.incentive)} incentives")
        kept = self._standings.setdefault(capability, {})
        kept.setdefault(epoch, Standing(epoch, dict(zip(sellers, result.incentive,
                                                         strict=True))))
        for old in sorted(kept)[:-KEPT_EPOCHS]:
            del kept[old]

    def standing(self, capability: str, epoch: int | None = None) -> Standing | None:
        """`capability`'s standing at `epoch` (default: the latest); None if not computed."""
        kept = self._standings.get(capability)
        if not kept:
            return None
        return kept[max(kept)] if epoch is None else kept.get(epoch)

    def capabilities(self) -> list[str]:
        """The capabilities with at least one epoch computed, sorted."""
        return sorted(c for c, kept in self._standings.items() if kept)

    def incentive(self, capability: str, seller: str) -> float | None:
        """`seller`'s latest incentive as a fraction of the emission; None if unknown."""
        kept = self.standing(capability)
        value = None if kept is None else kept.incentive.get(seller)
        return None if value is None else value / ONE

    def document(self, epoch: int | None = None) -> dict[str, Any]:
        """Every capability's standing at `epoch` (default: the latest) as JSON.

        ``{capability: {"epoch": n, "sellers": [{"seller", "incentive", "quality"}]}}``
        with incentive a fraction of the emission, best first; a capability without that
        epoch is left out.
        """
        out: dict[str, Any] = {}
        for capability in self.capabilities():
            kept = self.standing(capability, epoch)
            if kept is None:
                continue
            rows = sorted(kept.incentive.items(), key=lambda item: (-item[1], item[0]))
            out[capability] = {"epoch": kept.epoch, "sellers": [
                {"seller": seller, "incentive": round(value / ONE, 6),
                 "quality": round(kept.quality(seller) or 0.0, 6)} for seller, value in rows]}
        return out
