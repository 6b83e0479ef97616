"""Which chain a node uses, and opening its client: the `[chain]` table's future home.

`ChainConfig` is what a node's config will say (`rpc`, `contract`, `timeout`); `open_chain`
turns it into a `ChainClient` for the node's account. On the embedded chain with no contract
address, it deploys a fresh contract with the node's account as admin, which is what a demo
or a single-process test wants; an RPC chain needs the address the operators published.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from aaex_agents.errors import UsageError

from .chain_backends import EMBEDDED, backend_for
from .chain_client import TX_TIMEOUT, ChainClient, ChainParams, deploy
from .chain_encoding import checked_address

EMBEDDED_GAS = 10**21
"""Gas money the embedded chain gives the node's account before it deploys (1,000 ether)."""


@dataclass(frozen=True, kw_only=True)
class ChainConfig:
    """Where a node's consensus chain is.

    Example: `ChainConfig(rpc="http://127.0.0.1:8545", contract="0x…")` for the operators'
    network; `ChainConfig()` for the in-process chain.
    """

    rpc: str = EMBEDDED
    """`"embedded"` (py-evm in this process) or the http(s) URL of the operator's own node."""
    contract: str | None = None
    """The consensus contract's address; required on an RPC chain, none deploys on embedded."""
    timeout: float = TX_TIMEOUT
    """Seconds a read or a transaction (estimate to receipt) may take."""

    def __post_init__(self) -> None:
        if self.rpc != EMBEDDED and not self.rpc.startswith(("http://", "https://")):
            raise UsageError(f"chain.rpc {self.rpc!r} is neither {EMBEDDED!r} nor an http(s) "
                             "URL; e.g. rpc = \"http://127.0.0.1:8545\"")
        if self.rpc != EMBEDDED and self.contract is None:
            raise UsageError("chain.contract is required with an RPC chain: the address the "
                             "operators published when they deployed the contract")
        if self.contract is not None:
            checked_address(self.contract, "chain.contract")
        if not self.timeout > 0:
            raise UsageError(f"chain.timeout must be positive seconds, got {self.timeout!r}")


@asynccontextmanager
async def open_chain(config: ChainConfig, account: LocalAccount, *,
                     params: ChainParams | None = None) -> AsyncIterator[ChainClient]:
    """The node's client of its chain, open for the block; the backend closes on exit.

    With the embedded chain and no `config.contract`, a contract is deployed with `params`
    (default `ChainParams()`) and `account` as its admin. `params` is refused otherwise: a
    deployed contract's parameters are read from it.
    """
    if params is not None and config.contract is not None:
        raise UsageError("open_chain: params apply only to a new embedded deployment; a "
                         "deployed contract's parameters are read from the chain")
    async with backend_for(config.rpc) as backend:
        if config.contract is None:
            await backend.fund(account.address, EMBEDDED_GAS)
            client = await deploy(backend, account, params or ChainParams(),
                                  timeout=config.timeout)
        else:
            client = await ChainClient.connect(backend, config.contract, account,
                                               timeout=config.timeout)
        yield client
