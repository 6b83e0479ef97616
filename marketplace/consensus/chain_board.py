"""`ChainBoard`: the consensus contract as a validator's `Board`, through its `ChainClient`.

The client already has the board's shape (commit, reveal, revealed weights, attest); this
adds the stake read and the sellers, whose chain accounts the operator maps to their market
addresses (the contract knows accounts only), and hashes the outputs as `distribute`
checks them (`EpochOutputs.digest`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aaex_agents.clock import Clock
from aaex_agents.errors import UsageError

from .board import Moment, Phase
from .chain_client import ChainClient
from .chain_encoding import EpochOutputs
from .errors import ChainRefused
from .yuma import EpochResult

BLOCK_SECONDS = 1.0
"""How often the chain is assumed to make a block unless told (anvil --block-time 1)."""


class ChainBoard:
    """One validator account's `Board` on the chain."""

    def __init__(self, client: ChainClient,
                 sellers: Mapping[str, Mapping[str, str]], *,
                 block_seconds: float = BLOCK_SECONDS) -> None:
        """`sellers`: capability -> seller chain account -> its market address.

        `block_seconds` is how often the chain makes a block: windows are counted in blocks,
        so it turns them into the seconds a validator plans with, and it is how often a
        waiting validator looks at the chain again.
        """
        if not block_seconds > 0:
            raise UsageError(f"block_seconds must be positive, got {block_seconds!r}")
        self.client = client
        self._sellers = {c: dict(m) for c, m in sellers.items()}
        self._block_seconds = block_seconds

    @property
    def address(self) -> str:
        """The chain account this validator signs with."""
        return self.client.address

    async def moment(self) -> Moment:
        """The epoch and window the next transaction falls in (its end: blocks left)."""
        clock = await self.client.clock()
        left = clock.next_phase_at - clock.block - 1  # blocks after the next one, in window
        return Moment(clock.epoch, clock.phase, (left + 0.5) * self._block_seconds)

    async def wait_for(self, clock: Clock, epoch: int, phase: Phase) -> None:
        """Look at the chain every block until its next transaction falls in the window."""
        while not (await self.moment()).reached(epoch, phase):
            await clock.sleep(self._block_seconds)

    async def stake_of(self, account: str) -> int:
        """`account`'s stake on the contract, in micro-credits."""
        return (await self.client.account_state(account)).stake.micro

    async def sellers(self, capability: str) -> dict[str, str]:
        """The sellers the operator mapped: chain account -> market address."""
        return dict(self._sellers.get(capability, {}))

    async def commit_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> bytes:
        """The contract's commitment (`ChainClient.commit_weights`)."""
        return await self.client.commit_weights(capability, epoch, weights, salt)

    async def reveal_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> None:
        """The contract's reveal (`ChainClient.reveal_weights`)."""
        await self.client.reveal_weights(capability, epoch, weights, salt)

    async def revealed_weights(self, capability: str, epoch: int) -> dict[str, dict[str, int]]:
        """The reveals the contract accepted."""
        return await self.client.revealed_weights(capability, epoch)

    async def attest(self, capability: str, epoch: int, outputs_hash: bytes) -> None:
        """The contract's attestation (`ChainClient.attest`)."""
        await self.client.attest(capability, epoch, outputs_hash)

    def outputs_hash(self, sellers: Sequence[str], validators: Sequence[str],
                     result: EpochResult) -> bytes:
        """`EpochOutputs.digest` of the outputs: what `distribute` pays against."""
        return _outputs(sellers, validators, result).digest()

    async def pay(self, clock: Clock, capability: str, epoch: int, sellers: Sequence[str],
                  validators: Sequence[str], result: EpochResult) -> bool:
        """Have the contract mint the epoch's emission (41/41/18) once final on these outputs.

        Waits block by block while the epoch lasts for it to be final; not final on these
        outputs, or already paid: nothing.
        """
        outputs = _outputs(sellers, validators, result)
        while (final := await self.client.finalized_hash(capability, epoch)) is None:
            if (await self.moment()).epoch != epoch:
                return False  # the epoch ended without 2/3 of the stake agreeing
            await clock.sleep(self._block_seconds)
        if final != outputs.digest() or await self.client.distributed(capability, epoch):
            return False
        try:
            await self.client.distribute(capability, epoch, outputs)
        except ChainRefused:
            if await self.client.distributed(capability, epoch):  # another was first
                return False
            raise
        return True


def _outputs(sellers: Sequence[str], validators: Sequence[str],
             result: EpochResult) -> EpochOutputs:
    return EpochOutputs(sellers=tuple(sellers), incentive=result.incentive,
                        validators=tuple(validators), dividends=result.dividends)
