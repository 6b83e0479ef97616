"""Where validators meet: stakes, sellers, weight commit-reveal and attestations.

`Board` is one validator account's handle on that record, shaped as the chain client's
methods are (`ChainClient.commit_weights`, `reveal_weights`, `revealed_weights`, `attest`,
a stake read), so the chain is one adapter away; `MemoryChain` is the in-process record
(one operator's validators, or tests) and `MemoryChain.account` a handle on it. The board
checks reveals, as the contract does: `revealed_weights` holds only reveals that match
their commitment and came inside the reveal window. `ConsensusBook` holds what each epoch
decided, per capability, for the market to read (awards blend it with receipts).
"""

from __future__ import annotations

import enum
import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aaex_agents.clock import Clock
from aaex_agents.errors import UsageError

from .errors import EpochInputError
from .fixed import ONE
from .reveal import Reveal, RevealVerdict, check_reveal, weights_commitment
from .yuma import EpochResult


class Phase(enum.Enum):
    """The window an epoch is in: weights are committed, then revealed, then attested."""

    COMMIT = "commit"
    REVEAL = "reveal"
    ATTEST = "attest"


_ORDER = {Phase.COMMIT: 0, Phase.REVEAL: 1, Phase.ATTEST: 2}


@dataclass(frozen=True, slots=True)
class Moment:
    """Where a board stands: the epoch and window the next write falls in."""

    epoch: int
    phase: Phase
    closes_in: float
    """Seconds until that window closes (exact on `MemoryChain`, estimated on a chain)."""

    def reached(self, epoch: int, phase: Phase) -> bool:
        """Whether the board is at `epoch`'s `phase` or past it."""
        return (self.epoch, _ORDER[self.phase]) >= (epoch, _ORDER[phase])


@dataclass(frozen=True, kw_only=True)
class EpochTimes:
    """An epoch's windows in seconds of the injected clock, from `genesis`."""

    genesis: float = 0.0
    """When epoch 0 starts (0: the Unix epoch, so nodes on wall clocks agree)."""
    length: float = 600.0
    commit: float = 240.0
    """Seconds from the epoch's start during which probes run and commitments count."""
    reveal: float = 120.0
    """Seconds after the commit window during which reveals count."""

    def __post_init__(self) -> None:
        if not (0 < self.commit and 0 < self.reveal and self.commit + self.reveal < self.length):
            raise UsageError("EpochTimes: commit and reveal must be positive and leave time "
                             "in the epoch for attestations")

    def epoch_at(self, now: float) -> int:
        """The epoch `now` falls in (0 before genesis)."""
        return max(0, int((now - self.genesis) // self.length))

    def start(self, epoch: int) -> float:
        """When `epoch` begins."""
        return self.genesis + epoch * self.length

    def reveal_window(self, epoch: int) -> tuple[int, int]:
        """The inclusive range of whole seconds in which `epoch`'s reveals count."""
        opens = self.start(epoch) + self.commit
        return int(opens), int(opens + self.reveal)

    def opens(self, epoch: int, phase: Phase) -> float:
        """When `epoch`'s `phase` begins (as `moment` places the windows)."""
        if phase is Phase.COMMIT:
            return self.start(epoch)
        opens, closes = self.reveal_window(epoch)
        return opens if phase is Phase.REVEAL else closes + 1

    def moment(self, now: float) -> Moment:
        """The epoch and window at `now`.

        Commit until the reveal window opens, reveal through its last whole second, attest
        from then to the next epoch.
        """
        epoch = self.epoch_at(now)
        for phase, ends in ((Phase.COMMIT, self.opens(epoch, Phase.REVEAL)),
                            (Phase.REVEAL, self.opens(epoch, Phase.ATTEST))):
            if now < ends:
                return Moment(epoch, phase, ends - now)
        return Moment(epoch, Phase.ATTEST, self.opens(epoch + 1, Phase.COMMIT) - now)


@runtime_checkable
class Board(Protocol):
    """One validator account's handle on the shared record (the chain, or `MemoryChain`)."""

    @property
    def address(self) -> str:
        """The account this handle signs as (a validator's, on the board)."""
        ...

    async def moment(self) -> Moment:
        """The epoch and window the board is in now."""
        ...

    async def wait_for(self, clock: Clock, epoch: int, phase: Phase) -> None:
        """Return once the board is in `epoch`'s `phase` or later (sleeping on `clock`)."""
        ...

    async def stake_of(self, account: str) -> int:
        """`account`'s stake (micro-credits) that votes in the current epoch."""
        ...

    async def sellers(self, capability: str) -> dict[str, str]:
        """The registered sellers of `capability`: board account -> market address."""
        ...

    async def commit_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> bytes:
        """Commit to `weights` (seller account -> u16) without showing them."""
        ...

    async def reveal_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> None:
        """Reveal the committed weights; anything else is refused."""
        ...

    async def revealed_weights(self, capability: str, epoch: int) -> dict[str, dict[str, int]]:
        """Every counted reveal of the epoch: validator -> seller -> weight."""
        ...

    async def attest(self, capability: str, epoch: int, outputs_hash: bytes) -> None:
        """Post the hash of the outputs this validator computed for the epoch."""
        ...

    def outputs_hash(self, sellers: Sequence[str], validators: Sequence[str],
                     result: EpochResult) -> bytes:
        """The hash of an epoch's outputs as this board's attestations compare them."""
        ...

    async def pay(self, clock: Clock, capability: str, epoch: int, sellers: Sequence[str],
                  validators: Sequence[str], result: EpochResult) -> bool:
        """Have the epoch's emission paid once it is final on these outputs.

        Paid once, by whoever asks first; True if this call paid it.
        """
        ...


@dataclass
class MemoryChain:
    """The in-process record validators share; time is `clock`'s, windows are `times`'.

    Sellers are registered under their market address as their account.
    """

    clock: Clock
    times: EpochTimes
    staked: dict[str, int] = field(default_factory=dict)
    registered: dict[str, list[str]] = field(default_factory=dict)
    commitments: dict[tuple[str, int], dict[str, bytes]] = field(default_factory=dict)
    counted: dict[tuple[str, int], dict[str, dict[str, int]]] = field(default_factory=dict)
    attestations: dict[tuple[str, int], dict[str, bytes]] = field(default_factory=dict)

    def account(self, address: str) -> MemoryBoard:
        """`address`'s handle on this record."""
        return MemoryBoard(self, address)


def _signer(capability: str, validator: str, sellers: Sequence[str]) -> str:
    return f"{capability}|{validator}|{'|'.join(sellers)}"


def _commitment(capability: str, validator: str, epoch: int, weights: Mapping[str, int],
                salt: bytes) -> bytes:
    names = sorted(weights)
    return weights_commitment(_signer(capability, validator, names), epoch,
                              [weights[n] for n in names], salt)


@dataclass
class MemoryBoard:
    """One account's handle on a `MemoryChain` (as a chain client is one account's).

    A commitment counts only inside the commit window and only the first; a reveal only if
    it matches that commitment, names exactly the registered sellers and comes inside the
    reveal window (else `EpochInputError` naming why, as the contract reverts).
    """

    chain: MemoryChain
    address: str

    async def moment(self) -> Moment:
        """The record's epoch and window on its clock."""
        return self.chain.times.moment(self.chain.clock.now())

    async def wait_for(self, clock: Clock, epoch: int, phase: Phase) -> None:
        """Sleep until the window opens (at once if it has)."""
        delay = self.chain.times.opens(epoch, phase) - clock.now()
        if delay > 0:
            await clock.sleep(delay)

    async def stake_of(self, account: str) -> int:
        """The stake `account` put on this record."""
        return self.chain.staked.get(account, 0)

    async def sellers(self, capability: str) -> dict[str, str]:
        """The registered sellers, each its own account."""
        return {s: s for s in self.chain.registered.get(capability, [])}

    async def commit_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> bytes:
        """Keep the first commitment made inside `epoch`'s commit window."""
        times, now = self.chain.times, self.chain.clock.now()
        if not times.start(epoch) <= now < times.start(epoch) + times.commit:
            raise EpochInputError(f"commit_weights: epoch {epoch}'s commit window is closed")
        commitment = _commitment(capability, self.address, epoch, weights, salt)
        self.chain.commitments.setdefault((capability, epoch), {}).setdefault(
            self.address, commitment)
        return commitment

    async def reveal_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> None:
        """Count the reveal if it matches the commitment, in the window (else refuse it)."""
        chain, names = self.chain, sorted(weights)
        # The committer's name binds the capability and the seller list to the weights.
        signer = _signer(capability, self.address, names)
        reveal = Reveal(validator=signer, epoch=epoch, weights=tuple(weights[n] for n in names),
                        salt=salt, revealed_at=int(chain.clock.now()))
        verdict = check_reveal(chain.commitments.get((capability, epoch), {}).get(self.address),
                               reveal, validator=signer, epoch=epoch,
                               window=chain.times.reveal_window(epoch), sellers=len(names))
        if verdict is RevealVerdict.COUNTED and names != sorted(
                chain.registered.get(capability, [])):
            verdict = RevealVerdict.MALFORMED
        if verdict is not RevealVerdict.COUNTED:
            raise EpochInputError(f"reveal_weights: refused, {verdict.value}")
        chain.counted.setdefault((capability, epoch), {}).setdefault(
            self.address, dict(weights))

    async def revealed_weights(self, capability: str, epoch: int) -> dict[str, dict[str, int]]:
        """The counted reveals of the epoch."""
        return {v: dict(w) for v, w in self.chain.counted.get((capability, epoch), {}).items()}

    async def attest(self, capability: str, epoch: int, outputs_hash: bytes) -> None:
        """Keep this account's latest attestation for the epoch."""
        self.chain.attestations.setdefault((capability, epoch), {})[self.address] = outputs_hash

    def outputs_hash(self, sellers: Sequence[str], validators: Sequence[str],
                     result: EpochResult) -> bytes:
        """`outputs_digest` of the outputs."""
        return outputs_digest(sellers, validators, result)

    async def pay(self, clock: Clock, capability: str, epoch: int, sellers: Sequence[str],
                  validators: Sequence[str], result: EpochResult) -> bool:
        """Nothing: the in-process record mints no emission."""
        return False


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
        """`seller`'s incentive relative to the best seller's, in [0, 1]; None if unseen.

        None too when no seller earned anything: an epoch in which no probe was delivered
        says nothing about anyone, and must not mark every seller worthless.
        """
        if seller not in self.incentive:
            return None
        best = max(self.incentive.values())
        return self.incentive[seller] / best if best > 0 else None


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
