"""Validators' consensus outweighs receipts in awards, so raters without stake cannot steer.

A cheap seller that honest buyers rated 0.0 gets two lying raters and four fresh keys to
rate it 1.0: a majority of its raters, so its receipt reputation is 1.0 and it would win on
price. Once the validators' consensus (a real `yuma_epoch` over their weights) says it is
bad, the buyer's award goes to the honest, dearer seller through a real negotiation.
"""

from __future__ import annotations

import pytest

from aaex_agents import MemoryNetwork, open_runtime
from marketplace.consensus import ONE, yuma_epoch
from marketplace.consensus.board import ConsensusBook
from marketplace.contracts.reputation import ReputationBook, Score
from marketplace.trade.delegation import Delegated, Delegator
from marketplace.trade.policy import Wallet
from marketplace.trade.standing import CONSENSUS_WEIGHT, standing
from tests.market_kit import cr
from tests.test_reputation_awards import CAPABILITY, Planner, Worker, rate, worker


def consensus_against(bad: str, good: str) -> ConsensusBook:
    """Three equally staked validators weigh `good` fully and `bad` not at all."""
    sellers = [bad, good]
    result = yuma_epoch([1_000, 1_000, 1_000], [[0, 65_535]] * 3, [[0, 0]] * 3)
    book = ConsensusBook()
    book.record(CAPABILITY, 0, sellers, result)
    assert result.incentive == (0, ONE)
    return book


async def buy(sellers: list[Worker], book: ReputationBook,
              consensus: ConsensusBook | None) -> Delegated:
    planner = Planner()

    async def find(capability: str, where: str | None) -> list[str]:
        return [s.address for s in sellers]

    budget = cr(10)
    delegator = Delegator(planner.identity, find=find, reputation=book, consensus=consensus,
                          wallet=Wallet(budget=budget * 100, per_seller=budget * 10,
                                        per_task=budget), negotiation_window=0.5)
    async with open_runtime([planner, *sellers],
                            transports=[MemoryNetwork().transport()]) as runtime:
        return await delegator.delegate(runtime.context(planner), CAPABILITY, {"n": 1},
                                        budget=budget, deadline=20, max_latency_ms=500)


@pytest.mark.parametrize("consensus", [False, True])
async def test_sybil_raters_cannot_make_a_seller_the_validators_rate_bad_win(
        consensus: bool) -> None:
    bad, good = worker("cheap bad", 2.0), worker("dear good", 3.0)
    book = ReputationBook()
    rate(book, bad.identity, [0, 0, 0], "honest")          # honest buyers: never met
    rate(book, bad.identity, [5, 5], "liar")               # two lying raters
    rate(book, bad.identity, [5, 5, 5, 5], "fresh key")    # four fresh keys
    rate(book, good.identity, [5, 5, 5], "honest good")
    assert book.score(bad.address).score == 1.0 == book.score(good.address).score
    view = consensus_against(bad.address, good.address) if consensus else None
    done = await buy([bad, good], book, view)
    # without a consensus the sybils win the award for the bad seller; with one they cannot
    assert done.seller == (good if consensus else bad).address


def test_the_standing_formula() -> None:
    view = consensus_against("bad", "good")
    receipts = Score(1.0, 9, 45)
    assert standing(receipts, view, CAPABILITY, "bad").score == pytest.approx(
        1 - CONSENSUS_WEIGHT)
    assert standing(receipts, view, CAPABILITY, "good").score == pytest.approx(1.0)
    # unseen by the consensus, or another capability: the receipt score, unchanged
    assert standing(receipts, view, CAPABILITY, "new") == receipts
    assert standing(receipts, view, "llm.chat", "bad") == receipts
    assert standing(receipts, None, CAPABILITY, "bad") == receipts
    # known to the consensus counts as rated, so it takes no newcomer's place
    assert standing(Score(0.5, 0, 0), view, CAPABILITY, "bad").raters == 1


def test_an_epoch_in_which_nobody_earned_leaves_the_receipts_alone() -> None:
    """No probe delivered in an epoch (every incentive 0) says nothing of anyone: it must not
    mark every seller worthless and stop the market buying at all."""
    silent = ConsensusBook()
    result = yuma_epoch([1_000], [[0, 0]], [[0, 0]])
    assert result.incentive == (0, 0)
    silent.record(CAPABILITY, 3, ["bad", "good"], result)
    receipts = Score(0.8, 4, 10)
    assert standing(receipts, silent, CAPABILITY, "good") == receipts
    assert standing(receipts, silent, CAPABILITY, "bad") == receipts


def test_a_node_market_hands_its_consensus_to_every_delegator() -> None:
    from marketplace.trade.market import NodeMarket

    planner = Planner()

    async def nothing(capability: str, where: str | None) -> list[str]:
        return []

    market = NodeMarket({planner.address: planner}, find=nothing, ledger=None)
    assert market.for_agent(planner.address).consensus is market.consensus
