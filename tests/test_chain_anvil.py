"""Two validator processes on one anvil dev chain agree on a finalized epoch hash.

Marked `anvil`: it runs when an anvil binary is found ($AAEX_ANVIL, which .ci/run sets after
`npm install @foundry-rs/anvil`, or `anvil` on PATH) and skips, saying why, otherwise.
The test deploys the contract, registers a capability with two sellers and stakes two
validators whose chain accounts derive from their identity seeds; then each validator runs
`tests/peers/chain_validator.py` in its own process, and the test only mines the chain from
one window to the next. Each validator holds half the stake, so the epoch is final only if
both computed the same outputs from what the chain holds.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from aaex_agents.identity import Identity
from aaex_agents.money import Credits
from marketplace.consensus import ChainClient, DevChain, Phase, chain_account
from tests.chain_kit import anvil_or_skip, open_anvil, open_test_chain
from tests.conftest import ROOT
from tests.peers.chain_validator import outputs_from

pytestmark = pytest.mark.anvil
CAP = "forecast.demand"


async def _line(process: asyncio.subprocess.Process, expected: str) -> str:
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), timeout=60)).decode().strip()
    assert line.startswith(expected), f"expected {expected!r}, the validator said {line!r}"
    return line


async def test_two_processes_sharing_anvil_agree_on_the_final_epoch_hash(
        tmp_path: Path) -> None:
    binary = anvil_or_skip()
    async with open_anvil(binary, tmp_path / "anvil.log") as url, DevChain(url) as backend:
        chain = await open_test_chain(backend)
        owner = await chain.account()
        await owner.register_capability(CAP)
        sellers = [(await chain.account()).address for _ in range(2)]
        for seller in sellers:
            await owner.register_seller(CAP, seller)
        seeds = [bytes([n]) * 32 for n in (1, 2)]
        for seed in seeds:
            await chain.account(credits=500, stake=500, key=chain_account(Identity(seed)))
        epoch = await chain.next_epoch()

        weights = [{sellers[0]: 3, sellers[1]: 1}, {sellers[0]: 1, sellers[1]: 1}]
        processes = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.peers.chain_validator", url, chain.admin.contract_address,
            seed.hex(), CAP, str(epoch), json.dumps(w), cwd=ROOT, stdout=asyncio.subprocess.PIPE)
            for seed, w in zip(seeds, weights, strict=True)]
        try:
            for expected, phase in (("committed", Phase.REVEAL), ("revealed", Phase.ATTEST)):
                for process in processes:
                    await _line(process, expected)
                await chain.advance_to(epoch, phase)
            attested = [(await _line(p, "attested")).split()[1] for p in processes]
            final = [(await _line(p, "final")).split()[1] for p in processes]
            assert [await asyncio.wait_for(p.wait(), timeout=30) for p in processes] == [0, 0]
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

        on_chain = await chain.admin.finalized_hash(CAP, epoch)
        assert on_chain is not None
        expected = outputs_from(await chain.admin.revealed_weights(CAP, epoch))
        assert attested == final == [on_chain.hex()] * 2 == [expected.digest().hex()] * 2
        await chain.admin.distribute(CAP, epoch, expected)
        paid = [(await chain.admin.account_state(a)).balance.micro
                for a in (*expected.sellers, *expected.validators, owner.address)]
        assert sum(paid) == chain.admin.params.emission_per_epoch.micro
        assert Credits(sum(paid)) == chain.admin.params.emission_per_epoch


class StaleEstimates(DevChain):
    """Fault injection: gas is estimated against an older block, as for a transaction whose
    estimate was made before other validators' transactions of the same block landed."""

    def __init__(self, url: str, block: int) -> None:
        super().__init__(url)
        self.estimate_at = block  # type: ignore[misc]


async def test_an_attestation_estimated_before_the_others_landed_still_finalizes(
        tmp_path: Path) -> None:
    """The attestation that makes an epoch final does more than its estimate said when the
    estimate was made before the other validator's landed (it stores the outputs): it must
    still have the gas to do it, or the epoch is never final."""
    binary = anvil_or_skip()
    async with open_anvil(binary, tmp_path / "anvil.log") as url, DevChain(url) as backend:
        chain = await open_test_chain(backend)
        await (await chain.account()).register_capability(CAP)
        first, second, third = [await chain.account(credits=100, stake=100) for _ in range(3)]
        await chain.account(credits=1, stake=1)  # so that only all three together make 2/3
        epoch = await chain.next_epoch(Phase.ATTEST)
        digest = bytes(range(1, 33))
        await first.attest(CAP, epoch, digest)
        estimated = (await first.clock()).block  # the third's estimate sees this state...
        await second.attest(CAP, epoch, digest)  # ...not this one: two thirds less a unit
        assert await chain.admin.finalized_hash(CAP, epoch) is None
        async with StaleEstimates(url, estimated) as stale:
            late = await ChainClient.connect(stale, chain.admin.contract_address,
                                             third.account)
            await late.attest(CAP, epoch, digest)  # this one makes the epoch final
        assert await chain.admin.finalized_hash(CAP, epoch) == digest
