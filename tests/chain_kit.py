"""A consensus chain for tests: the contract on a backend, an admin, funded staked accounts."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from aaex_agents.money import Credits
from marketplace.consensus import (
    ChainBackend,
    ChainClient,
    ChainParams,
    DevChain,
    EmbeddedChain,
    Phase,
    deploy,
    load_artifact,
)

GAS_MONEY = 10**20
FAST = ChainParams(epoch_length=40, commit_blocks=10, reveal_blocks=10, unbond_delay=25,
                   emission_per_epoch=Credits(1_000_000_007))


@dataclass
class ChainKit:
    """The admin's client plus helpers to add accounts and move the chain's clock."""

    backend: ChainBackend
    admin: ChainClient
    accounts: list[ChainClient] = field(default_factory=list)

    async def account(self, *, credits: int = 0, stake: int = 0,
                      key: LocalAccount | None = None) -> ChainClient:
        """A new funded account with `credits` granted and `stake` of them staked."""
        client = self.admin.with_account(key or Account.create())
        await self.backend.fund(client.address, GAS_MONEY)
        if credits:
            await self.admin.grant(client.address, Credits(credits))
        if stake:
            await client.stake(Credits(stake))
        self.accounts.append(client)
        return client

    async def advance_to(self, epoch: int, phase: Phase) -> None:
        """Mine until the next transaction falls in `phase` of `epoch`."""
        p = self.admin.params
        start = self.admin.genesis + epoch * p.epoch_length
        target = start + {Phase.COMMIT: 0, Phase.REVEAL: p.commit_blocks,
                          Phase.ATTEST: p.commit_blocks + p.reveal_blocks}[phase]
        clock = await self.admin.clock()
        if clock.block + 1 > target:
            raise AssertionError(f"block {clock.block + 1} is already past {epoch}/{phase}")
        if target - clock.block - 1:
            await self.backend.mine(target - clock.block - 1)
        now = await self.admin.clock()
        assert (now.epoch, now.phase) == (epoch, phase), now

    async def next_epoch(self, phase: Phase = Phase.COMMIT) -> int:
        """Advance to `phase` of the next epoch; returns its number."""
        epoch = (await self.admin.clock()).epoch + 1
        await self.advance_to(epoch, phase)
        return epoch


async def open_test_chain(backend: ChainBackend, params: ChainParams = FAST) -> ChainKit:
    """Deploy the contract on `backend` from a new funded admin account."""
    admin = Account.create()
    await backend.fund(admin.address, GAS_MONEY)
    return ChainKit(backend, await deploy(backend, admin, params))


async def send_raw(client: ChainClient, function: str, *args: object) -> None:
    """Call the contract as a hostile party would: straight through web3, past the client."""
    web3 = client.backend.web3
    contract = web3.eth.contract(address=web3.to_checksum_address(client.contract_address),
                                 abi=load_artifact().abi)
    tx = await getattr(contract.functions, function)(*args).build_transaction(
        {"from": client.address,
         "nonce": await web3.eth.get_transaction_count(client.address, "pending")})
    signed = client.account.sign_transaction(tx)  # type: ignore[arg-type]
    receipt = await web3.eth.wait_for_transaction_receipt(
        await web3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1


def anvil_binary() -> str | None:
    """The anvil to start: $AAEX_ANVIL (set by .ci/run) or `anvil` on PATH; None if neither."""
    return os.environ.get("AAEX_ANVIL") or shutil.which("anvil")


def anvil_or_skip() -> str:
    """The anvil to start; the test is skipped, saying why and how to get one, without."""
    binary = anvil_binary()
    if binary is None:
        pytest.skip("no anvil: set AAEX_ANVIL or put anvil on PATH (.ci/run installs it "
                    "with npm install @foundry-rs/anvil)")
    return binary


@asynccontextmanager
async def open_anvil(binary: str, log: Path) -> AsyncIterator[str]:
    """An anvil dev chain on a free loopback port; yields its URL, stops it on exit.

    anvil picks the port (`--port 0`) and names it on its first lines; its log goes to a
    file, so a chatty node never blocks on a full pipe.
    """
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary, "--host", "127.0.0.1", "--port", "0", stdout=out,
            stderr=asyncio.subprocess.STDOUT)
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not (found := re.search(rb"Listening on (127\.0\.0\.1:\d+)",
                                      await asyncio.to_thread(log.read_bytes))):
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                text = await asyncio.to_thread(log.read_text)
                raise RuntimeError(f"anvil did not start: {text[-2000:]}")
            await asyncio.sleep(0.05)
        yield f"http://{found.group(1).decode()}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()


BACKENDS = ["embedded", pytest.param("anvil", marks=pytest.mark.anvil)]
"""The backends a chain test runs on: the contract suite is one conformance suite."""


@asynccontextmanager
async def open_backend(kind: str, tmp_path: Path) -> AsyncIterator[ChainBackend]:
    """The embedded chain, or a fresh anvil (skipping, saying why, when there is none)."""
    if kind == "embedded":
        async with EmbeddedChain() as embedded:
            yield embedded
        return
    async with open_anvil(anvil_or_skip(), tmp_path / "anvil.log") as url, DevChain(url) as dev:
        yield dev
