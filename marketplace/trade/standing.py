"""A seller's standing for an award: receipt reputation, outweighed by validator consensus.

Receipt reputation (`ReputationBook`) is the median over raters, and a rater is any key
that escrowed money with the seller: cheap to mint in numbers for a seller that buys from
itself. Validators' consensus incentive is backed by stake and by probes they scored
themselves, so where a consensus exists for the capability it weighs most:

    quality  = incentive(seller) / max over sellers of incentive        (in [0, 1])
    standing = w * quality + (1 - w) * receipt_score                     w = CONSENSUS_WEIGHT

A seller the consensus has not seen (or a capability without one) keeps its receipt score
unchanged. With w = 0.8, raters without stake move a seller's standing by at most 0.2,
whatever their number: a seller the validators rate 0 stands at most 0.2, below the
newcomer's neutral 0.5, and `BuyerUtility`'s bound (a seller at 0.2 or less never beats one
at 0.8 or more at up to twice its price) applies.
"""

from __future__ import annotations

from ..consensus.board import ConsensusBook
from ..contracts.reputation import Score

CONSENSUS_WEIGHT = 0.8
"""How much of a seller's standing the validators' consensus sets, where it exists."""


def standing(score: Score, consensus: ConsensusBook | None, capability: str, seller: str,
             weight: float = CONSENSUS_WEIGHT) -> Score:
    """`score` blended with `seller`'s consensus quality for `capability`, as above.

    A seller the consensus knows counts as rated (``raters`` at least 1), so it does not
    take the shortlist's place kept for newcomers.
    """
    standing_ = None if consensus is None else consensus.standing(capability)
    quality = None if standing_ is None else standing_.quality(seller)
    if quality is None:
        return score
    return Score(weight * quality + (1 - weight) * score.score, max(1, score.raters),
                 score.receipts)
