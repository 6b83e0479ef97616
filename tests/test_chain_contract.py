"""The consensus contract: stakes, registration, commit-reveal, finality, on every backend.

Each test deploys a fresh contract and drives it through `ChainClient` (a hostile caller goes
straight to the contract): on py-evm in this process, and again on a fresh anvil dev node
(marked `anvil`, skipped without one), so the suite is the backends' conformance suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aaex_agents.money import Credits
from marketplace.consensus import ChainRefused, Phase, capability_id
from tests.chain_kit import BACKENDS, ChainKit, open_backend, open_test_chain, send_raw

CAP = "llm.chat"


@pytest.fixture(params=BACKENDS)
async def chain(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChainKit]:
    async with open_backend(request.param, tmp_path) as backend:
        yield await open_test_chain(backend)


async def test_unstaked_credits_come_back_only_after_the_unbond_delay(chain: ChainKit) -> None:
    alice = await chain.account(credits=1_000, stake=600)
    await alice.request_unstake(Credits(250))
    state = await alice.account_state()
    assert (state.balance.micro, state.stake.micro, state.unbonding.micro) == (400, 350, 250)

    with pytest.raises(ChainRefused, match="withdraw: still unbonding"):
        await alice.withdraw()
    clock = await alice.clock()
    await chain.backend.mine(state.unbond_at - clock.block - 2)  # next tx: one block early
    with pytest.raises(ChainRefused, match="still unbonding"):
        await alice.withdraw()
    await chain.backend.mine(1)  # a refused transaction is never mined: mine its block
    await alice.withdraw()  # mined at unbond_at exactly
    state = await alice.account_state()
    assert (state.balance.micro, state.stake.micro, state.unbonding.micro) == (650, 350, 0)
    with pytest.raises(ChainRefused, match="nothing to withdraw"):
        await alice.withdraw()
    with pytest.raises(ChainRefused, match="unstake exceeds stake"):
        await alice.request_unstake(Credits(351))
    with pytest.raises(ChainRefused, match="stake exceeds balance"):
        await alice.stake(Credits(651))


async def test_only_the_admin_grants_credits(chain: ChainKit) -> None:
    mallory = await chain.account()
    with pytest.raises(ChainRefused, match="only the admin grants credits"):
        await mallory.grant(mallory.address, Credits(10**12))
    assert (await chain.admin.total_supply()).micro == 0


async def test_only_the_capability_owner_key_registers_sellers(chain: ChainKit) -> None:
    owner, seller, mallory = [await chain.account() for _ in range(3)]
    with pytest.raises(ChainRefused, match="unknown capability"):
        await owner.register_seller(CAP, seller.address)
    await owner.register_capability(CAP)
    assert await chain.admin.capability_owner(CAP) == owner.address
    with pytest.raises(ChainRefused, match="capability already registered"):
        await mallory.register_capability(CAP)
    with pytest.raises(ChainRefused, match="only the capability owner registers sellers"):
        await mallory.register_seller(CAP, mallory.address)
    await owner.register_seller(CAP, seller.address)
    with pytest.raises(ChainRefused, match="seller already registered"):
        await owner.register_seller(CAP, seller.address)


async def _market(chain: ChainKit) -> tuple[list[str], int]:
    """A capability with two sellers; returns the sellers and the epoch stakes count in."""
    owner = await chain.account()
    await owner.register_capability(CAP)
    sellers = [(await chain.account()).address for _ in range(2)]
    for seller in sellers:
        await owner.register_seller(CAP, seller)
    return sellers, (await chain.admin.clock()).epoch + 1


async def test_a_validator_cannot_change_its_weights_after_committing(chain: ChainKit) -> None:
    sellers, _ = await _market(chain)
    val = await chain.account(credits=100, stake=100)
    late = await chain.account(credits=100, stake=100)
    epoch = await chain.next_epoch()
    weights, salt = {sellers[0]: 7, sellers[1]: 3}, b"\x01" * 32

    await val.commit_weights(CAP, epoch, weights, salt)
    with pytest.raises(ChainRefused, match="weights already committed for this epoch"):
        await val.commit_weights(CAP, epoch, {sellers[0]: 9, sellers[1]: 1}, salt)
    with pytest.raises(ChainRefused, match="reveal window not open"):
        await val.reveal_weights(CAP, epoch, weights, salt)
    await late.commit_weights(CAP, epoch, weights, b"\x02" * 32)

    await chain.advance_to(epoch, Phase.REVEAL)
    with pytest.raises(ChainRefused, match="commit window closed"):
        await val.commit_weights(CAP, epoch, {sellers[0]: 9}, salt)
    with pytest.raises(ChainRefused, match="reveal_weights: reveal does not match commitment"):
        await val.reveal_weights(CAP, epoch, {sellers[0]: 8, sellers[1]: 3}, salt)
    with pytest.raises(ChainRefused, match="reveal does not match commitment"):
        await val.reveal_weights(CAP, epoch, weights, b"\x03" * 32)
    await val.reveal_weights(CAP, epoch, weights, salt)
    with pytest.raises(ChainRefused, match="weights already revealed"):
        await val.reveal_weights(CAP, epoch, weights, salt)
    assert await chain.admin.revealed_weights(CAP, epoch) == {val.address: weights}

    await chain.advance_to(epoch, Phase.ATTEST)
    with pytest.raises(ChainRefused, match="reveal window closed"):
        await late.reveal_weights(CAP, epoch, weights, b"\x02" * 32)
    assert await chain.admin.revealed_weights(CAP, epoch) == {val.address: weights}


async def test_a_commitment_cannot_be_copied_by_another_validator(chain: ChainKit) -> None:
    sellers, _ = await _market(chain)
    honest = await chain.account(credits=100, stake=100)
    copier = await chain.account(credits=100, stake=100)
    epoch = await chain.next_epoch()
    weights, salt = {sellers[0]: 5}, b"\x07" * 32
    commitment = await honest.commit_weights(CAP, epoch, weights, salt)
    # the copier posts the same hash straight to the contract (the client would not)
    await send_raw(copier, "commit_weights", capability_id(CAP), epoch, commitment)
    await chain.advance_to(epoch, Phase.REVEAL)
    await honest.reveal_weights(CAP, epoch, weights, salt)
    with pytest.raises(ChainRefused, match="reveal does not match commitment"):
        await copier.reveal_weights(CAP, epoch, weights, salt)


async def test_weights_need_stake_from_before_the_epoch_and_registered_sellers(
        chain: ChainKit) -> None:
    sellers, _ = await _market(chain)
    val = await chain.account(credits=100)
    epoch = await chain.next_epoch()
    await val.stake(Credits(100))  # counts from the next epoch, not this one
    with pytest.raises(ChainRefused, match="no stake in this epoch"):
        await val.commit_weights(CAP, epoch, {sellers[0]: 1}, b"\x00" * 32)
    epoch = await chain.next_epoch()
    stranger = (await chain.account()).address
    await val.commit_weights(CAP, epoch, {stranger: 1}, b"\x00" * 32)
    await chain.advance_to(epoch, Phase.REVEAL)
    with pytest.raises(ChainRefused, match="weight for an unregistered seller"):
        await val.reveal_weights(CAP, epoch, {stranger: 1}, b"\x00" * 32)


async def test_an_epoch_is_final_when_two_thirds_of_stake_attest_one_hash(
        chain: ChainKit) -> None:
    await _market(chain)
    a, b, c = [await chain.account(credits=s, stake=s) for s in (200, 50, 51)]
    epoch = await chain.next_epoch(Phase.ATTEST)
    x, y = b"\xaa" * 32, b"\xbb" * 32

    await a.attest(CAP, epoch, x)  # 200 of 301: 600 < 602, just short of 2/3
    assert await chain.admin.finalized_hash(CAP, epoch) is None
    with pytest.raises(ChainRefused, match="already attested"):
        await a.attest(CAP, epoch, y)
    await b.attest(CAP, epoch, y)  # a different hash does not add up with x
    assert await chain.admin.finalized_hash(CAP, epoch) is None
    await c.attest(CAP, epoch, x)  # 251 of 301
    assert await chain.admin.finalized_hash(CAP, epoch) == x


async def test_exactly_two_thirds_is_final_and_attestation_has_its_window(
        chain: ChainKit) -> None:
    await _market(chain)
    a = await chain.account(credits=200, stake=200)
    await chain.account(credits=100, stake=100)
    epoch = await chain.next_epoch(Phase.REVEAL)
    with pytest.raises(ChainRefused, match="attestation window not open"):
        await a.attest(CAP, epoch, b"\x01" * 32)
    await chain.advance_to(epoch, Phase.ATTEST)
    with pytest.raises(ChainRefused, match="not the current epoch"):
        await a.attest(CAP, epoch - 1, b"\x01" * 32)
    await a.attest(CAP, epoch, b"\x01" * 32)  # 200 of 300 is exactly 2/3
    assert await chain.admin.finalized_hash(CAP, epoch) == b"\x01" * 32


async def test_unstaking_mid_epoch_does_not_change_the_epochs_weights(chain: ChainKit) -> None:
    await _market(chain)
    a = await chain.account(credits=100, stake=100)
    b = await chain.account(credits=100, stake=100)
    epoch = await chain.next_epoch(Phase.ATTEST)
    await b.request_unstake(Credits(100))  # the total stays 200 for this epoch
    await a.attest(CAP, epoch, b"\x05" * 32)
    assert await chain.admin.finalized_hash(CAP, epoch) is None
    await b.attest(CAP, epoch, b"\x05" * 32)  # b still votes with its 100 this epoch
    assert await chain.admin.finalized_hash(CAP, epoch) == b"\x05" * 32
