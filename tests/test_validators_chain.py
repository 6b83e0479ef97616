"""Validators on the consensus contract (embedded EVM): commit, reveal, Yuma, attest, final.

Three staked validators score four sellers, one of which answered a fifth of its probes
wrongly; each commits and reveals its weights through `ChainBoard` in the contract's
windows, computes the epoch from the reveals and stakes the contract holds, and attests;
the contract finalizes the hash they agree on, `distribute` pays against it, and the
lying seller's incentive is a fraction of the others'.
"""

from __future__ import annotations

from eth_account import Account

from marketplace.consensus import EmbeddedChain, EpochOutputs, Phase
from marketplace.consensus.board import EpochTimes
from marketplace.consensus.chain_board import ChainBoard
from marketplace.trade.validator import Validator
from tests.chain_kit import open_test_chain
from tests.market_kit import identity

CAPABILITY = "forecast.demand"


async def test_validators_agree_on_chain_and_the_liar_earns_least() -> None:
    async with EmbeddedChain() as backend:
        kit = await open_test_chain(backend)
        await kit.admin.register_capability(CAPABILITY)
        seller_accounts = [Account.create().address for _ in range(4)]
        for account in seller_accounts:
            await kit.admin.register_seller(CAPABILITY, account)
        market = {a: f"aaex-seller-{k}" for k, a in enumerate(seller_accounts)}
        liar = market[seller_accounts[0]]
        clients = [await kit.account(credits=1_000, stake=1_000) for _ in range(3)]
        validators = [Validator(identity(f"validator {k}"),
                                board=ChainBoard(c, {CAPABILITY: market}),
                                times=EpochTimes())
                      for k, c in enumerate(clients)]
        epoch = await kit.next_epoch(Phase.COMMIT)  # stakes vote from the next epoch on
        # every fifth probe of the liar was wrong (score 0), the rest right
        scores = {m: ([1.0, 1.0, 1.0, 1.0, 0.0] if m == liar else [1.0] * 5)
                  for m in market.values()}
        committed = [await v.commit_scores(CAPABILITY, epoch, market, scores)
                     for v in validators]
        await kit.advance_to(epoch, Phase.REVEAL)
        for v, (weights, salt) in zip(validators, committed, strict=True):
            await v.on_board.reveal_weights(CAPABILITY, epoch, weights, salt)
        await kit.advance_to(epoch, Phase.ATTEST)
        for v in validators:
            await v.compute(CAPABILITY, epoch)
        final = await kit.admin.finalized_hash(CAPABILITY, epoch)
        standing = validators[0].book.standing(CAPABILITY, epoch)
        assert standing is not None
        incentive = standing.incentive
        result = validators[0].results[CAPABILITY]
        revealed = await kit.admin.revealed_weights(CAPABILITY, epoch)
        expected = EpochOutputs(sellers=tuple(sorted(market)), incentive=result.incentive,
                                validators=tuple(sorted(revealed)), dividends=result.dividends)
        assert len(revealed) == 3 and final == expected.digest()
        await kit.admin.distribute(CAPABILITY, epoch, expected)  # the contract pays on it
    honest = [incentive[m] for m in market.values() if m != liar]
    assert incentive[liar] * 4 < min(honest)  # 0.8 ** 8 = 0.17 of an honest weight
