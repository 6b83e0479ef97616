"""`ChainBoard`: the consensus contract as a validator's `Board`, through its `ChainClient`.

The client already has the board's shape (commit, reveal, revealed weights, attest); this
adds the stake read and the sellers, whose chain accounts the operator maps to their market
addresses (the contract knows accounts only), and hashes the outputs as `distribute`
checks them (`EpochOutputs.digest`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .chain_client import ChainClient
from .chain_encoding import EpochOutputs
from .yuma import EpochResult


class ChainBoard:
    """One validator account's `Board` on the chain."""

    def __init__(self, client: ChainClient,
                 sellers: Mapping[str, Mapping[str, str]]) -> None:
        """`sellers`: capability -> seller chain account -> its market address."""
        self.client = client
        self._sellers = {c: dict(m) for c, m in sellers.items()}

    @property
    def address(self) -> str:
        """The chain account this validator signs with."""
        return self.client.address

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
        return EpochOutputs(sellers=tuple(sellers), incentive=result.incentive,
                            validators=tuple(validators), dividends=result.dividends).digest()
