"""Seller reputation from verified receipts, robust to a minority of dishonest raters.

Only receipts that verify count: the buyer's signature must check, and the receipt must
settle an agreement this book knows (both parties' signatures checked) with that seller,
with a verdict that follows from its own measurement (`SignedReceipt.verify_against`).

Aggregation is two-stage, so that volume cannot buy influence:

1. per rater (buyer): the fraction of its receipts for the seller that say *met*;
2. across raters: the median of those per-rater scores (the mean of the two middle ones
   for an even count). Each rater has one voice however many receipts it signs.

Bound (checked by a property test): let `h` honest raters have sorted scores
``s_1 <= ... <= s_h`` and let ``d < h`` raters collude with any scores at all. With
``n = h + d``, the middle ranks ``m1 = (n + 1) // 2`` and ``m2 = n // 2 + 1`` satisfy
``1 <= m1 - d`` and ``m2 <= h``, so the score lies in::

    [(s_{m1-d} + s_{m2-d}) / 2,  (s_{m1} + s_{m2}) / 2]   (`collusion_bound`)

which is inside ``[s_1, s_h]``: a colluding minority can move a seller's score no further
than the honest raters' own spread, and not at all when honest raters agree. This is the
median-style clipping Bittensor's Yuma consensus applies to weights. It limits a minority
of *raters*, not of identities: raters are buyers who escrowed real money in a recorded
agreement with the seller, which is what makes minting a majority of raters expensive.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aaex_agents.errors import UsageError

from .agreement import SignedAgreement
from .errors import UnknownAgreement
from .receipt import SignedReceipt

NEUTRAL = 0.5
"""The score of a seller nobody has rated yet (with `raters == 0`, so rankers can tell)."""


@dataclass(frozen=True, slots=True)
class Score:
    """A seller's reputation."""

    score: float
    """In [0, 1]: the median over raters of the share of their receipts that say met."""
    raters: int
    """Distinct buyers whose receipts count."""
    receipts: int
    """Verified receipts behind the score."""


def median(values: Sequence[float]) -> float:
    """The median (mean of the two middle values for an even count).

    Raises:
        UsageError: `values` is empty.
    """
    if not values:
        raise UsageError("median of no values; check `raters` before aggregating")
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[(n + 1) // 2 - 1] + ordered[n // 2]) / 2


def collusion_bound(honest: Sequence[float], colluders: int) -> tuple[float, float]:
    """The interval the median must stay in, whatever `colluders` extra scores are added.

    See the module docstring for the derivation.

    Raises:
        UsageError: `colluders` is not fewer than the honest raters.
    """
    h, d = len(honest), colluders
    if not 0 <= d < h:
        raise UsageError(f"the bound holds for fewer colluders than honest raters; got "
                         f"{d} colluders and {h} honest raters")
    s = sorted(honest)
    n = h + d
    m1, m2 = (n + 1) // 2, n // 2 + 1
    return (s[m1 - d - 1] + s[m2 - d - 1]) / 2, (s[m1 - 1] + s[m2 - 1]) / 2


class ReputationBook:
    """Known agreements and the verified receipts settling them, scored per seller.

    Feed it from a ledger with `add_settled(await ledger.settled_receipts())`, or receipt
    by receipt as they arrive. Pure computation: no I/O, nothing to close.
    """

    def __init__(self) -> None:
        self._agreements: dict[str, SignedAgreement] = {}
        self._receipts: dict[str, SignedReceipt] = {}
        # seller -> buyer -> [met, total]
        self._tally: dict[str, dict[str, list[int]]] = defaultdict(dict)

    def add_agreement(self, signed: SignedAgreement) -> None:
        """Make an agreement known, after checking both parties' signatures.

        Raises:
            BadContractSignature: a signature does not verify.
        """
        signed.verify()
        self._agreements[signed.id] = signed

    def add_receipt(self, signed: SignedReceipt) -> bool:
        """Count a receipt; False when one for its agreement was counted already.

        The first receipt for an agreement is the one that counts, as on the ledger, so a
        rater cannot weigh in twice on one agreement (nothing changes on False).

        Raises:
            UnknownAgreement: its agreement was not added first.
            BadContractSignature, ReceiptMismatch: it does not verify against it.
        """
        agreement = self._agreements.get(signed.receipt.agreement_id)
        if agreement is None:
            raise UnknownAgreement(f"receipt {signed.id[:12]} settles agreement "
                                   f"{signed.receipt.agreement_id[:12]}, which this book does "
                                   "not know; add the signed agreement first")
        signed.verify_against(agreement)
        previous = self._receipts.get(agreement.id)
        if previous is not None:
            return False  # one receipt per agreement: a second cannot double a rater's weight
        self._receipts[agreement.id] = signed
        tally = self._tally[signed.receipt.seller].setdefault(signed.receipt.buyer, [0, 0])
        tally[0] += signed.receipt.verdict == "met"
        tally[1] += 1
        return True

    def add_settled(self, pairs: Iterable[tuple[SignedAgreement, SignedReceipt]]) -> int:
        """Add agreements with their receipts (e.g. `Ledger.settled_receipts()`); count new.

        Raises:
            BadContractSignature, ReceiptMismatch: a pair does not verify; pairs before it
                were added.
        """
        added = 0
        for agreement, receipt in pairs:
            self.add_agreement(agreement)
            added += self.add_receipt(receipt)
        return added

    def score(self, seller: str) -> Score:
        """`seller`'s score; `NEUTRAL` with zero raters when nobody has rated it."""
        raters = self._tally.get(seller, {})
        if not raters:
            return Score(NEUTRAL, 0, 0)
        per_rater = [met / total for met, total in raters.values()]
        return Score(median(per_rater), len(raters), sum(t for _, t in raters.values()))

    def scores(self) -> dict[str, Score]:
        """Every rated seller's score."""
        return {seller: self.score(seller) for seller in self._tally}

    def __repr__(self) -> str:
        return (f"<ReputationBook agreements={len(self._agreements)} "
                f"receipts={len(self._receipts)} sellers={len(self._tally)}>")
