"""Where the chain runs: in this process, in a local dev node, or behind any JSON-RPC URL.

One interface, three backends, all reached through web3's `AsyncWeb3`:

- `EmbeddedChain` — py-evm inside this process (eth-tester, on a worker thread): the
  default, so the demo and single-process tests need nothing running. Its state lives and
  dies with the object.
- `DevChain` — a local dev node (anvil) at a loopback URL, shared by several processes in the
  multi-process tests; it can fund accounts and mine blocks on request.
- `RpcChain` — any EVM JSON-RPC endpoint: production, e.g. the operators' consortium network.
  Accounts are funded by their operators and blocks come at the network's pace.

`backend_for(rpc)` picks one from the config value (`"embedded"` or an http(s) URL).
"""

from __future__ import annotations

import abc
import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Self

from aiohttp import ClientTimeout
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider
from web3.providers.eth_tester.main import _make_request
from web3.types import BlockIdentifier, RPCEndpoint, RPCResponse, Wei

from aaex_agents.errors import UsageError

EMBEDDED = "embedded"
"""The config value that selects the in-process chain."""
RPC_TIMEOUT = 10.0
"""Seconds one JSON-RPC request may take before the call fails as unavailable."""


class ChainBackend(abc.ABC):
    """A chain to talk to: its web3 handle, and the two powers only a dev chain has.

    Use it as `async with backend:` (or call `aclose`): an RPC backend holds an HTTP session.
    """

    estimate_at: ClassVar[BlockIdentifier | None] = "pending"
    """The block a transaction is estimated against: the one it will land in. Against
    `latest` (anvil's default) a window that opens with the next block still looks closed."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - nothing to close unless a backend says so
        """Close what the backend opened; the embedded chain holds nothing to close."""

    @property
    @abc.abstractmethod
    def web3(self) -> AsyncWeb3[Any]:
        """The async web3 handle every client of this chain shares."""

    @abc.abstractmethod
    async def fund(self, address: str, wei: int) -> None:
        """Give `address` gas money (dev chains); a production chain raises UsageError."""

    @abc.abstractmethod
    async def mine(self, blocks: int) -> None:
        """Advance the chain by `blocks` empty blocks (dev chains); production raises."""


class _EvmThreadProvider(AsyncEthereumTesterProvider):
    """eth-tester's async provider with the EVM's work moved off the event loop.

    web3's own provider runs py-evm inline, so a transaction blocked the loop for as long as
    the EVM took (0.5 s for a 64-seller `distribute` on a busy machine). Every request runs
    on one worker thread instead: py-evm is not thread-safe, and one thread keeps its calls
    in order.
    """

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        super().__init__()
        self._executor = executor

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request_id = repr(self._current_request_id)
        self._current_request_id += 1
        # web3's module-level handler, the one its provider calls inline (pinned web3 8.x)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _make_request, method, params, self.api_endpoints,
            self.ethereum_tester, request_id)


class EmbeddedChain(ChainBackend):
    """py-evm in this process, through eth-tester: transactions are mined one block each.

    The EVM runs on one worker thread owned by this object (`aclose` stops it), so the event
    loop goes on while a transaction executes.
    """

    estimate_at = None  # eth-tester estimates against its pending block and takes no other

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aaex-evm")
        self._provider = _EvmThreadProvider(self._executor)
        self._web3: AsyncWeb3[Any] = AsyncWeb3(self._provider)

    @property
    def web3(self) -> AsyncWeb3[Any]:
        """The handle on this process's EVM."""
        return self._web3

    async def aclose(self) -> None:
        """Stop the EVM's worker thread; the chain's state is gone with it."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def fund(self, address: str, wei: int) -> None:
        """Send `wei` from eth-tester's prefunded account."""
        bank = (await self._web3.eth.accounts)[0]
        tx = await self._web3.eth.send_transaction(
            {"from": bank, "to": self._web3.to_checksum_address(address), "value": Wei(wei)})
        await self._web3.eth.wait_for_transaction_receipt(tx)

    async def mine(self, blocks: int) -> None:
        """Mine `blocks` empty blocks at once (on the EVM's thread)."""
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._provider.ethereum_tester.mine_blocks, blocks)

    def __repr__(self) -> str:
        return "<EmbeddedChain py-evm in-process>"


class RpcChain(ChainBackend):
    """Any EVM JSON-RPC endpoint; transactions are signed here and sent raw."""

    def __init__(self, url: str, *, timeout: float = RPC_TIMEOUT) -> None:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"chain rpc {url!r} is neither {EMBEDDED!r} nor an http(s) URL; "
                             "e.g. rpc = \"http://127.0.0.1:8545\"")
        self.url = url
        self._web3: AsyncWeb3[Any] = AsyncWeb3(
            AsyncHTTPProvider(url, request_kwargs={"timeout": ClientTimeout(total=timeout)}))

    @property
    def web3(self) -> AsyncWeb3[Any]:
        """The handle on the endpoint (one HTTP session, opened on first use)."""
        return self._web3

    async def aclose(self) -> None:
        """Close the HTTP session to the endpoint, if one was opened."""
        await self._web3.provider.disconnect()

    async def fund(self, address: str, wei: int) -> None:
        """Refused: on a production chain the operator funds the account."""
        raise UsageError(f"{self.url} is a production chain: fund {address} by a transfer "
                         "from the operator's wallet (docs/consensus.md, 'Keys and funding')")

    async def mine(self, blocks: int) -> None:
        """Refused: a production chain mines at its own pace."""
        raise UsageError(f"{self.url} is a production chain: its blocks come at its own pace")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class DevChain(RpcChain):
    """A local anvil node: an RPC chain that also funds accounts and mines on request."""

    async def fund(self, address: str, wei: int) -> None:
        """Set the balance of `address` to `wei` (anvil_setBalance)."""
        await self._web3.provider.make_request(
            "anvil_setBalance", [self._web3.to_checksum_address(address), hex(wei)])

    async def mine(self, blocks: int) -> None:
        """Mine `blocks` empty blocks at once (anvil_mine)."""
        await self._web3.provider.make_request("anvil_mine", [hex(blocks)])


def backend_for(rpc: str = EMBEDDED) -> ChainBackend:
    """The backend a config's `[chain] rpc` value names: `"embedded"` or an http(s) URL."""
    return EmbeddedChain() if rpc == EMBEDDED else RpcChain(rpc)
