"""The ``[chain]`` section: where this node's validators commit, reveal and attest.

    [chain]
    rpc = "http://127.0.0.1:8545"     # or "embedded" (py-evm in the node: a demo, one node)
    contract = "0x…"                  # the consensus contract the operators deployed
    block_seconds = 2.0               # how often that chain makes a block
    [chain.sellers."forecast.demand"]
    "0xSellerChainAccount" = "aaex1…seller's market address"

Without it, the validators a node hosts share a board inside the node (`MemoryChain`,
marketplace.node.validators). With it, each validator is bound to the contract through a
`ChainBoard` as its own chain account, derived from its identity seed (`chain_account`), so
stakes, commitments, reveals and attestations of every operator's validators meet on one
chain. The contract knows sellers by chain account only; ``sellers`` maps each registered
account to the market address the validators buy probes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

from pydantic import Field, model_validator

from aaex_agents.clock import Clock
from aaex_agents.errors import UsageError
from aaex_agents.identity import Identity

from ..consensus.chain_board import BLOCK_SECONDS, ChainBoard
from ..consensus.chain_client import TX_TIMEOUT, ChainClient, ChainParams
from ..consensus.chain_config import ChainConfig, open_chain
from ..consensus.chain_encoding import checked_address
from ..consensus.chain_keys import chain_account
from ..consensus.errors import ChainError
from ..trade.validator import Validator
from .tables import Table, problem

logger = logging.getLogger(__name__)


class ChainSection(Table):
    """``[chain]``: the chain client's settings, checked as the client checks them.

    Attributes:
        rpc: ``"embedded"`` or the http(s) URL of the operator's chain node.
        contract: the consensus contract's address (required with an RPC chain; with the
            embedded chain, none deploys a fresh one for this node).
        timeout: seconds a chain read or transaction may take.
        block_seconds: how often the chain makes a block (windows are counted in blocks).
        sellers: capability -> seller chain account -> the seller's market address.
    """

    rpc: str = "embedded"
    contract: str | None = None
    timeout: float = Field(default=TX_TIMEOUT, gt=0)
    block_seconds: float = Field(default=BLOCK_SECONDS, gt=0)
    sellers: Mapping[str, Mapping[str, str]] = Field(default_factory=dict, strict=False)
    epoch_blocks: int = Field(default=100, gt=2)
    commit_blocks: int = Field(default=30, gt=0)
    reveal_blocks: int = Field(default=30, gt=0)
    """The three windows, for a contract this node deploys on the embedded chain only (a
    deployed contract's are read from it)."""

    @model_validator(mode="after")
    def _checked(self) -> ChainSection:
        try:
            self.client_config()
            self.sandbox_params()
            for capability, accounts in self.sellers.items():
                for account in accounts:
                    checked_address(account, f"chain.sellers.{capability}")
        except UsageError as exc:
            raise problem(str(exc)) from None
        return self

    def client_config(self) -> ChainConfig:
        """The client's `ChainConfig` of this section."""
        return ChainConfig(rpc=self.rpc, contract=self.contract, timeout=self.timeout)

    def sandbox_params(self) -> ChainParams | None:
        """The parameters of the contract this node deploys (None: it joins a deployed one)."""
        if self.contract is not None:
            return None
        return ChainParams(epoch_length=self.epoch_blocks, commit_blocks=self.commit_blocks,
                           reveal_blocks=self.reveal_blocks)


async def open_node_chain(stack: AsyncExitStack, section: ChainSection, node: Identity,
                          validators: Sequence[Validator], clock: Clock) -> ChainClient:
    """The node's client of its chain, closed with `stack` (see `open_chain`).

    With the embedded chain and no contract, this node is the chain's only user (a demo, a
    sandbox): it deploys the contract as its admin, funds each validator's account, grants
    and stakes its ``stake`` setting, registers each capability and the ``sellers`` of the
    section, and makes a block every ``block_seconds`` (a dev chain makes none unless asked).
    """
    client = await stack.enter_async_context(open_chain(
        section.client_config(), chain_account(node), params=section.sandbox_params()))
    if section.contract is None:
        await _prepare_sandbox(client, section, validators)
        await stack.enter_async_context(_making_blocks(client, section.block_seconds, clock))
    return client


async def _prepare_sandbox(admin: ChainClient, section: ChainSection,
                           validators: Sequence[Validator]) -> None:
    capabilities = {c for v in validators for c in v.probes} | set(section.sellers)
    for capability in sorted(capabilities):
        await admin.register_capability(capability)
        for seller in section.sellers.get(capability, {}):
            await admin.register_seller(capability, seller)
    for validator in validators:
        account = chain_account(validator.identity)
        await admin.backend.fund(account.address, SANDBOX_GAS)
        if validator.stake.micro > 0:
            await admin.grant(account.address, validator.stake)
            await admin.with_account(account).stake(validator.stake)


@asynccontextmanager
async def _making_blocks(client: ChainClient, seconds: float, clock: Clock
                         ) -> AsyncIterator[None]:
    async def make() -> None:
        while True:
            await clock.sleep(seconds)
            try:
                await client.backend.mine(1)
            except (ChainError, OSError) as exc:  # one missed block; the next may come
                logger.warning("the embedded chain made no block: %s", exc)

    task = asyncio.create_task(make(), name="embedded chain blocks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


SANDBOX_GAS = 10**20
"""Gas money (100 ether) a sandbox node gives each of its validators' accounts."""


def validator_board(client: ChainClient, section: ChainSection,
                    validator: Identity) -> ChainBoard:
    """`validator`'s board on the chain: the node's client, signing as its own account."""
    return ChainBoard(client.with_account(chain_account(validator)), section.sellers,
                      block_seconds=section.block_seconds)
