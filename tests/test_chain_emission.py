"""Emission on the embedded EVM: a final epoch's credits split 41/41/18, conserved to the unit.

Hypothesis draws the emission and both share vectors; for each draw a fresh contract
finalizes one epoch and `distribute` mints it. Every minted unit must land on an account:
sellers get floor(41% * share / total), validators the same from their 41%, and the
capability owner the rest (18% plus every unit the rounding or an empty side leaves).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aaex_agents.money import Credits
from marketplace.consensus import (
    ChainParams,
    ChainRefused,
    EmbeddedChain,
    EpochOutputs,
    Phase,
)
from tests.chain_kit import FAST, ChainKit, open_test_chain

CAP = "llm.chat"
shares = st.lists(st.integers(min_value=0, max_value=2**64), max_size=6)


@asynccontextmanager
async def _final_epoch(emission: int,
                       outputs: EpochOutputs) -> AsyncIterator[tuple[ChainKit, int, str]]:
    """A fresh chain whose next epoch is final on `outputs`: it, the epoch, the owner."""
    params = ChainParams(epoch_length=FAST.epoch_length, commit_blocks=FAST.commit_blocks,
                         reveal_blocks=FAST.reveal_blocks, unbond_delay=FAST.unbond_delay,
                         emission_per_epoch=Credits(emission))
    async with EmbeddedChain() as backend:
        chain = await open_test_chain(backend, params)
        admin = chain.admin  # owns the capability and holds all the stake: fewer transactions
        await admin.register_capability(CAP)
        await admin.grant(admin.address, Credits(1))
        await admin.stake(Credits(1))  # its balance is 0 again: all it gets later is the owner's
        epoch = await chain.next_epoch(Phase.ATTEST)
        await admin.attest(CAP, epoch, outputs.digest())
        yield chain, epoch, admin.address


def _outputs(incentive: list[int], dividends: list[int]) -> EpochOutputs:
    return EpochOutputs(
        sellers=tuple(Account.create().address for _ in incentive), incentive=tuple(incentive),
        validators=tuple(Account.create().address for _ in dividends),
        dividends=tuple(dividends))


@pytest.mark.timeout(300)  # about 1 s an example on 2 idle cores; several on busy ones
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(emission=st.integers(min_value=0, max_value=10**30), incentive=shares, dividends=shares)
def test_the_emission_split_is_conserved_to_the_unit(
        emission: int, incentive: list[int], dividends: list[int]) -> None:
    outputs = _outputs(incentive, dividends)

    async def run() -> None:
        async with _final_epoch(emission, outputs) as (chain, epoch, owner):
            await check(chain, epoch, owner)

    async def check(chain: ChainKit, epoch: int, owner: str) -> None:
        supply_before = (await chain.admin.total_supply()).micro
        await chain.admin.distribute(CAP, epoch, outputs)

        async def balance(address: str) -> int:
            return (await chain.admin.account_state(address)).balance.micro

        paid_sellers = [await balance(a) for a in outputs.sellers]
        paid_validators = [await balance(a) for a in outputs.validators]
        to_owner = await balance(owner)
        assert sum(paid_sellers) + sum(paid_validators) + to_owner == emission
        assert (await chain.admin.total_supply()).micro == supply_before + emission
        pool = emission * 41 // 100
        for paid, side in ((paid_sellers, incentive), (paid_validators, dividends)):
            total = sum(side)
            assert paid == [pool * s // total if total else 0 for s in side]
        assert to_owner >= emission - 2 * pool  # 18% at least, plus the dust

    asyncio.run(run())


async def test_emission_pays_only_the_finalized_outputs_and_only_once() -> None:
    outputs = _outputs([3, 1], [1])
    async with _final_epoch(1_000, outputs) as (chain, epoch, owner):
        await _check_only_once(chain, epoch, owner, outputs)


async def _check_only_once(chain: ChainKit, epoch: int, owner: str,
                           outputs: EpochOutputs) -> None:
    forged = EpochOutputs(sellers=outputs.sellers, incentive=(1, 3),
                          validators=outputs.validators, dividends=outputs.dividends)
    with pytest.raises(ChainRefused, match="distribute: outputs do not match the finalized"):
        await chain.admin.distribute(CAP, epoch, forged)
    with pytest.raises(ChainRefused, match="epoch not final"):
        await chain.admin.distribute(CAP, epoch + 1, outputs)
    await chain.admin.distribute(CAP, epoch, outputs)
    with pytest.raises(ChainRefused, match="emission already distributed"):
        await chain.admin.distribute(CAP, epoch, outputs)
    balances = [(await chain.admin.account_state(a)).balance.micro
                for a in (*outputs.sellers, *outputs.validators, owner)]
    assert balances == [307, 102, 410, 181]  # 410*3//4, 410//4, 410; 180 + 1 of dust
