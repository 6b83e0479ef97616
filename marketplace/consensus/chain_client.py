"""The one client of the consensus contract: every read and write the market makes on chain.

A `ChainClient` holds a backend's web3 handle, the contract's address and one account, and
signs its own transactions, so the same code runs on the embedded EVM, a dev node and a
production RPC endpoint. Amounts are `Credits` (integer micro-credits, the contract's unit).
A revert comes out as `ChainRefused` naming the action and the contract's reason; a chain
that does not answer, or does not mine a transaction within `timeout`, as `ChainUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractConstructor, AsyncContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception
from web3.types import TxReceipt

from aaex_agents.errors import UsageError
from aaex_agents.money import Credits

from .artifact import load_artifact
from .board import Phase
from .chain_backends import ChainBackend
from .chain_encoding import (
    EpochOutputs,
    capability_id,
    checked_address,
    sorted_weights,
    weights_commitment,
)
from .errors import ChainRefused, ChainUnavailable

TX_TIMEOUT = 30.0
"""Seconds to wait for a transaction to be mined before `ChainUnavailable`."""
GAS_HEADROOM = 60_000
"""Gas a transaction gets beyond its estimate. The estimate is made against the state before
other transactions of the same block: an attestation estimated before another validator's
lands may be the one that makes the epoch final, which stores the outputs and logs it."""
DEFAULT_EMISSION = Credits(1_000_000_000)
"""Credits minted per capability and final epoch unless the deployment says otherwise: 1,000."""
_NETWORK_ERRORS = (Web3Exception, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, kw_only=True)
class ChainParams:
    """The contract's constructor arguments: fixed for its life, agreed by all operators."""

    epoch_length: int = 100
    """Blocks per epoch."""
    commit_blocks: int = 30
    """Blocks at the start of an epoch that take weight commitments."""
    reveal_blocks: int = 30
    """Blocks after the commit window that take reveals; the rest take attestations."""
    unbond_delay: int = 200
    """Blocks between `request_unstake` and the earliest `withdraw`."""
    emission_per_epoch: Credits = DEFAULT_EMISSION
    """Credits minted for each capability's final epoch."""

    def __post_init__(self) -> None:
        if self.commit_blocks < 1 or self.reveal_blocks < 1:
            raise UsageError("ChainParams: commit_blocks and reveal_blocks must be at least 1")
        if self.commit_blocks + self.reveal_blocks >= self.epoch_length:
            raise UsageError("ChainParams: epoch_length must exceed commit_blocks + "
                             "reveal_blocks, or no block is left for attestations")
        if self.unbond_delay < 0 or self.emission_per_epoch.micro < 0:
            raise UsageError("ChainParams: unbond_delay and emission_per_epoch are >= 0")


@dataclass(frozen=True, kw_only=True)
class ChainClock:
    """Where the chain stands for the next transaction (mined in the block after `block`)."""

    block: int
    """The latest mined block."""
    epoch: int
    """The epoch the next transaction falls in."""
    phase: Phase
    """The window the next transaction falls in."""
    next_phase_at: int
    """The first block of the next window."""


@dataclass(frozen=True, kw_only=True)
class AccountState:
    """One account's credits on chain."""

    balance: Credits
    """Free credits (granted, emitted or withdrawn)."""
    stake: Credits
    """Staked credits; they vote from the next epoch on."""
    unbonding: Credits
    """Credits requested back, withdrawable from block `unbond_at`."""
    unbond_at: int
    """The first block at which `withdraw` succeeds (0 when nothing unbonds)."""


class ChainClient:
    """One account's handle on the consensus contract; reuse it, it keeps no connection."""

    def __init__(self, backend: ChainBackend, address: str, account: LocalAccount,
                 params: ChainParams, genesis: int, *, timeout: float = TX_TIMEOUT) -> None:
        self.backend = backend
        self.account = account
        self.params = params
        self.genesis = genesis
        self._timeout = timeout
        self._contract: AsyncContract = backend.web3.eth.contract(
            address=checked_address(address, "contract"), abi=load_artifact().abi)
        self._sending = asyncio.Lock()  # one nonce at a time for this account

    @property
    def address(self) -> str:
        """The address of the account this client signs with (checksummed)."""
        return str(self.account.address)

    @property
    def contract_address(self) -> str:
        """The consensus contract's address."""
        return str(self._contract.address)

    @classmethod
    async def connect(cls, backend: ChainBackend, address: str, account: LocalAccount, *,
                      timeout: float = TX_TIMEOUT) -> ChainClient:
        """A client of the contract deployed at `address`, its parameters read from chain."""
        functions = backend.web3.eth.contract(
            address=checked_address(address, "contract"), abi=load_artifact().abi).functions
        try:
            async with asyncio.timeout(timeout):
                values = [await getattr(functions, name)().call() for name in (
                    "epoch_length", "commit_blocks", "reveal_blocks", "unbond_delay",
                    "emission_per_epoch", "genesis")]
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"no consensus contract answers at {address} on "
                                   f"{backend!r}: {exc}") from exc
        params = ChainParams(epoch_length=values[0], commit_blocks=values[1],
                             reveal_blocks=values[2], unbond_delay=values[3],
                             emission_per_epoch=Credits(values[4]))
        return cls(backend, address, account, params, values[5], timeout=timeout)

    def with_account(self, account: LocalAccount) -> ChainClient:
        """A client of the same contract for another account."""
        return ChainClient(self.backend, self.contract_address, account, self.params,
                           self.genesis, timeout=self._timeout)

    # -- reads -------------------------------------------------------------------------------

    async def clock(self) -> ChainClock:
        """The epoch and window the next transaction will fall in."""
        block = await self._read(self.backend.web3.eth.block_number)
        pending = block + 1
        start = pending - (pending - self.genesis) % self.params.epoch_length
        commit_end = start + self.params.commit_blocks
        reveal_end = commit_end + self.params.reveal_blocks
        phase, nxt = ((Phase.COMMIT, commit_end) if pending < commit_end else
                      (Phase.REVEAL, reveal_end) if pending < reveal_end else
                      (Phase.ATTEST, start + self.params.epoch_length))
        epoch = (pending - self.genesis) // self.params.epoch_length
        return ChainClock(block=block, epoch=epoch, phase=phase, next_phase_at=nxt)

    async def account_state(self, address: str | None = None) -> AccountState:
        """Balance, stake and unbonding of `address` (default: this client's account)."""
        who = checked_address(address or self.address, "account")
        f = self._contract.functions
        balance, stake, unbonding, unbond_at = [
            await self._read(call(who).call()) for call in
            (f.balance_of, f.stake_of, f.unbonding, f.unbond_at)]
        return AccountState(balance=Credits(balance), stake=Credits(stake),
                            unbonding=Credits(unbonding), unbond_at=unbond_at)

    async def total_supply(self) -> Credits:
        """Every credit ever granted or emitted on this chain."""
        return Credits(await self._read(self._contract.functions.total_supply().call()))

    async def capability_owner(self, capability: str) -> str | None:
        """The owner key's address of `capability`, or None if it is not registered."""
        owner = await self._read(
            self._contract.functions.capability_owner(capability_id(capability)).call())
        return None if int(owner, 16) == 0 else str(owner)

    async def finalized_hash(self, capability: str, epoch: int) -> bytes | None:
        """The outputs hash 2/3 of the epoch's stake attested, or None while not final."""
        value = await self._read(
            self._contract.functions.finalized(capability_id(capability), epoch).call())
        return None if value == bytes(32) else bytes(value)

    async def attestation(self, capability: str, epoch: int, account: str) -> bytes | None:
        """The outputs hash `account` attested for the epoch, or None."""
        value = await self._read(self._contract.functions.attestation(
            capability_id(capability), epoch, checked_address(account, "account")).call())
        return None if value == bytes(32) else bytes(value)

    async def distributed(self, capability: str, epoch: int) -> bool:
        """Whether the epoch's emission was minted."""
        return bool(await self._read(
            self._contract.functions.distributed(capability_id(capability), epoch).call()))

    async def revealed_weights(self, capability: str, epoch: int) -> dict[str, dict[str, int]]:
        """Every validator's revealed weights of the epoch: validator -> seller -> weight."""
        event = self._contract.events.WeightsRevealed
        logs = await self._read(event.get_logs(
            from_block=self.genesis + epoch * self.params.epoch_length,
            argument_filters={"capability": capability_id(capability), "epoch": epoch}))
        return {str(log["args"]["validator"]): dict(zip(
            map(str, log["args"]["sellers"]), log["args"]["weights"], strict=True))
            for log in logs}

    # -- writes ------------------------------------------------------------------------------

    async def grant(self, account: str, amount: Credits) -> None:
        """Allocate genesis credits to `account` (the deployer's account only)."""
        await self._send("grant", self._contract.functions.grant(
            checked_address(account, "account"), amount.micro))

    async def stake(self, amount: Credits) -> None:
        """Move `amount` from balance to stake; it votes from the next epoch on."""
        await self._send("stake", self._contract.functions.stake(amount.micro))

    async def request_unstake(self, amount: Credits) -> None:
        """Stop `amount` of stake counting; `withdraw` it `unbond_delay` blocks later."""
        await self._send("request_unstake", self._contract.functions.request_unstake(amount.micro))

    async def withdraw(self) -> None:
        """Return every unbonded credit to the balance, once the delay has passed."""
        await self._send("withdraw", self._contract.functions.withdraw())

    async def register_capability(self, capability: str) -> None:
        """Register `capability` with this account's key as its owner key."""
        await self._send("register_capability",
                         self._contract.functions.register_capability(capability_id(capability)))

    async def register_seller(self, capability: str, seller: str) -> None:
        """Register `seller` for `capability`; only the capability's owner key may."""
        await self._send("register_seller", self._contract.functions.register_seller(
            capability_id(capability), checked_address(seller, "seller")))

    async def commit_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> bytes:
        """Commit to `weights` (seller -> weight) without showing them; returns the hash."""
        cap = capability_id(capability)
        commitment = weights_commitment(cap, epoch, self.address, weights, salt)
        await self._send("commit_weights",
                         self._contract.functions.commit_weights(cap, epoch, commitment))
        return commitment

    async def reveal_weights(self, capability: str, epoch: int, weights: Mapping[str, int],
                             salt: bytes) -> None:
        """Reveal the committed weights; anything else is refused as not matching."""
        sellers, values = sorted_weights(weights)
        await self._send("reveal_weights", self._contract.functions.reveal_weights(
            capability_id(capability), epoch, sellers, values, salt))

    async def attest(self, capability: str, epoch: int, outputs_hash: bytes) -> None:
        """Post the hash of the outputs this node computed for the epoch."""
        await self._send("attest", self._contract.functions.attest(
            capability_id(capability), epoch, outputs_hash))

    async def distribute(self, capability: str, epoch: int, outputs: EpochOutputs) -> None:
        """Mint a final epoch's emission to the outputs whose hash was finalized."""
        await self._send("distribute", self._contract.functions.distribute(
            capability_id(capability), epoch, *outputs.as_args()))

    # -- plumbing ----------------------------------------------------------------------------

    async def _read(self, call: Any) -> Any:
        try:
            return await asyncio.wait_for(call, self._timeout)
        except _NETWORK_ERRORS as exc:
            raise ChainUnavailable(f"{self.backend!r} did not answer a read: {exc}") from exc

    async def _send(self, action: str, call: AsyncContractFunction) -> TxReceipt:
        async with self._sending:  # one nonce at a time for this account
            return await _transact(self.backend, self.account, action, call, self._timeout)

    def __repr__(self) -> str:
        return f"<ChainClient {self.address} on {self.contract_address} via {self.backend!r}>"


async def _transact(backend: ChainBackend, account: LocalAccount, action: str,
                    call: AsyncContractFunction | AsyncContractConstructor,
                    timeout: float) -> TxReceipt:
    """Sign and send one transaction, wait until it is mined, and translate errors once.

    Gas is estimated against `backend.estimate_at` (the block the transaction lands in);
    the whole exchange, estimate to receipt, is bounded by `timeout`.
    """
    web3 = backend.web3
    try:
        async with asyncio.timeout(timeout):
            nonce = await web3.eth.get_transaction_count(account.address, "pending")
            gas = await call.estimate_gas({"from": account.address}, backend.estimate_at)
            tx = await call.build_transaction(
                {"from": account.address, "nonce": nonce, "gas": gas + GAS_HEADROOM})
            signed = account.sign_transaction(tx)  # type: ignore[arg-type]
            sent = await web3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = await web3.eth.wait_for_transaction_receipt(
                sent, timeout=timeout, poll_latency=0.05)
    except (ContractLogicError, TransactionFailed) as exc:
        raise ChainRefused(action, _reason(exc)) from exc
    except (TimeExhausted, TimeoutError) as exc:
        raise ChainUnavailable(f"{action}: not confirmed within {timeout:g} s by {backend!r}; "
                               "it may still be mined: read the state before retrying") from exc
    except _NETWORK_ERRORS as exc:
        raise ChainUnavailable(f"{action}: {backend!r} did not answer: {exc}") from exc
    if receipt["status"] != 1:
        raise ChainRefused(action, "reverted when mined (the state changed after its "
                           "estimate); read the state and retry")
    return receipt


def _reason(exc: Exception) -> str:
    """The contract's revert message, one line, without the RPC's prefix."""
    text = str(getattr(exc, "message", None) or exc)
    for prefix in ("execution reverted: ", "execution reverted"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    return (text or "reverted without a reason").splitlines()[0][:200]


async def deploy(backend: ChainBackend, account: LocalAccount, params: ChainParams, *,
                 timeout: float = TX_TIMEOUT) -> ChainClient:
    """Deploy a new consensus contract from `account` (its admin) and return its client."""
    artifact = load_artifact()
    web3 = backend.web3
    factory = web3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    constructor = factory.constructor(
        params.epoch_length, params.commit_blocks, params.reveal_blocks, params.unbond_delay,
        params.emission_per_epoch.micro)
    receipt = await _transact(backend, account, "deploy", constructor, timeout)
    address = receipt["contractAddress"]
    if address is None:
        raise ChainRefused("deploy", "the receipt names no contract address")
    return await ChainClient.connect(backend, address, account, timeout=timeout)
