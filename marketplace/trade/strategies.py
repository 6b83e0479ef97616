"""Negotiation strategies: time-based concession over a multi-issue utility.

A side's *aspiration* starts at 1 (its best outcome) and falls to its reservation utility as
the negotiation deadline nears: ``a(t) = 1 - (1 - reserve) * (t / T) ** e``. With e = 4
(Boulware) a side holds firm and concedes late, with e = 1 (linear) evenly, with e = 0.25
(conceder) early. Strategies are plain objects: swap one for another, or write your own with
the same two methods. (NegMAS has these strategies in-process only; here they drive signed
offers between nodes.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO, Credits

from ..contracts.agreement import TokenTerms
from ..contracts.reputation import NEUTRAL

BOULWARE, LINEAR, CONCEDER = 4.0, 1.0, 0.25


@dataclass(frozen=True)
class Offer:
    """The issues negotiated: price, promised latency, deadline and the breach penalty.

    `tokens` makes it a per-token offer (a language model's): `price` is then the cap the
    buyer escrows, and the agreement bills the tokens used at the prices it states. Amounts
    are `Credits`; the concession maths below works in floats and converts back once, with
    the rounding it states.
    """

    price: Credits
    latency_ms: float
    deadline_s: float
    penalty: Credits
    tokens: TokenTerms | None = None


ISSUE_WEIGHTS = ("price", "latency", "deadline", "penalty", "reputation")
MAX_REPUTATION_EXPONENT = 10.0
"""Beyond this, trust factors stop meaning anything (2 ** 10 already counts a seller rated 1.0
as charging a thousandth of its price) and would overflow further on."""
TRUST_FLOOR = 0.1
"""The lowest reputation a trust factor is computed from. A single rater who saw one failure
puts a seller at 0; without a floor no price would make it worth anything, so it could
never win again, even alone, nor earn its way back. At the floor its price counts five
times over (default exponent). The floor is below 0.2, so it leaves the bound of
`BuyerUtility` for sellers rated up to 0.2 as it is."""


@dataclass(frozen=True)
class Weights:
    """How much each issue matters to a buyer, and how strongly reputation discounts price.

    The five issue weights are normalised internally (only their ratios matter) and must be
    finite and non-negative, not all zero. `reputation_exponent` (0 to 10) sets how a
    seller's reputation scales the price the buyer sees; 0 turns that off (see
    `BuyerUtility`). The bound `BuyerUtility` documents needs an exponent above 0.5.

    Raises:
        UsageError: a weight or the exponent out of range (named).
    """

    price: float = 0.5
    latency: float = 0.2
    deadline: float = 0.1
    penalty: float = 0.1
    reputation: float = 0.1
    reputation_exponent: float = 1.0

    def __post_init__(self) -> None:
        for name in ISSUE_WEIGHTS:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"Weights.{name} must be a finite number >= 0, got {value}")
        if self.total <= 0:
            raise UsageError("the sum of the Weights must be positive; all five are 0")
        if not 0 <= self.reputation_exponent <= MAX_REPUTATION_EXPONENT:
            raise UsageError(f"Weights.reputation_exponent must be between 0 and "
                             f"{MAX_REPUTATION_EXPONENT:g}, got {self.reputation_exponent}")

    @property
    def total(self) -> float:
        """The sum of the five issue weights (what they are normalised by)."""
        return self.price + self.latency + self.deadline + self.penalty + self.reputation

    def trust(self, reputation: float) -> float:
        """The factor a seller's price is divided by: ``(max(r, TRUST_FLOOR) / NEUTRAL) ** e``.

        1 for an unrated seller (`NEUTRAL`); with the default exponent 2 for one rated 1.0
        and 0.2 for one rated 0.1 or less. `reputation` is clamped into [0, 1] first.
        """
        r = min(1.0, max(TRUST_FLOOR, reputation))
        return float((r / NEUTRAL) ** self.reputation_exponent)


@dataclass(frozen=True)
class BuyerUtility:
    """A buyer's utility of an offer, in [0, 1].

    Cheaper, faster, sooner, better insured and from a better-reputed seller is better; each
    issue is scaled by the buyer's own limits and weighted by `weights`.

    Reputation acts on price. A seller's score ``r`` is the share of its agreements that
    its raters saw met, in effect the chance that paying it gets the work done; so the buyer
    judges a price ``p`` as a price per delivered result, relative to an unrated seller:
    ``p / t(r)`` with the trust factor ``t(r) = (max(r, TRUST_FLOOR) / NEUTRAL) ** e``, ``e``
    being `Weights.reputation_exponent`. The price issue scores
    ``P = max(0, 1 - p / (max_price * t))``, and reputation is also an issue of its own with
    weight `Weights.reputation` (a taste for reliability beyond money). Offers beyond the
    buyer's limits score 0 as before.

    Bound. Take two offers equal in latency, deadline and penalty, within the buyer's
    limits, from sellers rated ``r_l < r_h`` (``r_h > NEUTRAL``): the low-rated one at price
    ``p_c``, the high-rated one at ``p_d < p_c * (r_h / max(r_l, TRUST_FLOOR)) ** e``. Then
    ``t_h / t_l`` exceeds ``p_d / p_c``, so ``p_d / t_h < p_c / t_l``: the high-rated offer's
    price score before clipping is above the low-rated one's, and clipping at 0 keeps the
    order, ``P_d >= P_c``. Every other issue is equal but reputation, which favours the
    high-rated seller, so its utility is strictly higher as soon as the reputation weight
    is positive, or the price weight is and ``p_c > 0`` (then ``P_d > P_c``, since
    ``t_h > 1`` keeps ``P_d`` above 0). With the defaults (``e = 1``) and
    ``r_l <= 0.2``, ``r_h >= 0.8`` the ratio is at least 4: a seller rated at most 0.2 never
    wins over one rated at least 0.8 that charges up to four times as much (the market
    asks for twice, which any exponent above 0.5 gives). A property test checks it, on the
    utility and through a real negotiation.

    Newcomers. An unrated seller has the book's neutral score, 0.5, hence ``t = 1``: its
    price is taken at face value, and its utility is exactly what it was before reputation
    counted. Against a seller rated ``r``, other issues equal, it wins when
    ``w_p * (P(p_r, r) - P(p_n, NEUTRAL)) < w_r * (0.5 - r)`` with the normalised weights
    ``w``. With the defaults: against a seller rated 0.2 it wins at up to 2.5 times that
    seller's price (5 times against one rated 0.1 or less); against one rated 1.0 it must
    ask less than half that seller's price minus a tenth of the buyer's maximum price. The
    delegator also keeps a place in its shortlist for an unrated seller, so a newcomer is
    always asked to bid (`marketplace.trade.delegation.shortlist`).
    """

    max_price: Credits
    max_latency_ms: float
    max_deadline_s: float
    wanted_penalty: Credits = ZERO
    weights: Weights = field(default_factory=Weights)
    ceiling: Credits | None = None
    """No offer above it is taken, while prices are still scaled by `max_price`: a
    fallback's held bid (`marketplace.trade.quotes`), which would otherwise score as the
    worst price the buyer allows."""

    def __post_init__(self) -> None:
        if self.max_price <= ZERO or self.max_latency_ms <= 0 or self.max_deadline_s <= 0:
            raise UsageError("BuyerUtility limits must be positive")

    def of(self, offer: Offer, reputation: float = NEUTRAL) -> float:
        """Utility of `offer` from a seller with `reputation` in [0, 1]; 0 if out of bounds."""
        if (offer.price > min(self.max_price, self.ceiling or self.max_price)
                or offer.latency_ms > self.max_latency_ms
                or offer.deadline_s > self.max_deadline_s):
            return 0.0
        w = self.weights
        priced = max(0.0, 1 - offer.price.micro / self.max_price.micro / w.trust(reputation))
        insured = (1.0 if self.wanted_penalty <= ZERO
                   else min(1.0, offer.penalty.micro / self.wanted_penalty.micro))
        score = (w.price * priced
                 + w.latency * (1 - offer.latency_ms / self.max_latency_ms)
                 + w.deadline * (1 - offer.deadline_s / self.max_deadline_s)
                 + w.penalty * insured + w.reputation * min(1.0, max(0.0, reputation)))
        return score / w.total

    def price_for(self, target: float, offer: Offer, reputation: float = NEUTRAL) -> Credits:
        """The highest price at which `offer` (other issues kept) reaches utility `target`.

        0 when even a free offer falls short; `offer.price` when price does not move the
        utility (a zero price weight). Worked out in floats of micro-credits and rounded
        down once: a buyer's counter never exceeds what its utility allows.
        """
        w = self.weights
        per_micro = w.price / w.total / self.max_price.micro / w.trust(reputation)
        if per_micro <= 0:
            return offer.price
        at_zero = self.of(Offer(ZERO, offer.latency_ms, offer.deadline_s, offer.penalty),
                          reputation)
        if target <= at_zero - w.price / w.total:
            # Reached even with the price issue at 0, where a low trust factor puts any price
            # above max_price * trust: the buyer's own limit is the answer.
            return self.max_price
        micro = max(0.0, min(float(self.max_price.micro), (at_zero - target) / per_micro))
        return Credits(int(micro))


def aspiration(elapsed: float, horizon: float, exponent: float, reserve: float) -> float:
    """Time-based aspiration: 1 at the start, `reserve` at the deadline."""
    if horizon <= 0:
        return reserve
    progress = min(1.0, max(0.0, elapsed / horizon))
    return 1.0 - (1.0 - reserve) * float(progress ** exponent)


@dataclass(frozen=True)
class BuyerStrategy:
    """When to accept and what to counter, as a buyer.

    Attributes:
        exponent: concession shape (BOULWARE, LINEAR, CONCEDER or any positive number).
        reserve: the lowest utility the buyer will accept at the deadline.
    """

    exponent: float = LINEAR
    reserve: float = 0.2

    def target(self, elapsed: float, horizon: float) -> float:
        """The utility the buyer holds out for at this moment."""
        return aspiration(elapsed, horizon, self.exponent, self.reserve)


@dataclass(frozen=True)
class SellerStrategy:
    """How a seller prices and concedes.

    Its reservation price comes from cost and current load (a busy seller charges more:
    ``cost * (1 + margin) * (1 + load_factor * queue_depth)``); it opens at `markup` times
    that and concedes towards it with the time-based `exponent`.
    """

    cost: Credits
    margin: float = 0.1
    markup: float = 1.6
    exponent: float = BOULWARE
    load_factor: float = 0.05
    latency_ms: float = 500.0
    deadline_s: float = 60.0
    penalty_rate: float = 0.5
    """Penalty offered, as a fraction of the price."""

    def __post_init__(self) -> None:
        if not isinstance(self.cost, Credits) or self.cost < ZERO:
            raise UsageError(f"SellerStrategy.cost must be Credits of 0 or more, got "
                             f"{self.cost!r}")

    @classmethod
    def from_settings(cls, **settings: Any) -> SellerStrategy:
        """A strategy from a node's ``[[agents]]`` settings, whose `cost` is decimal credits.

        Raises:
            UsageError: `cost` is missing or not an amount of credits (named).
        """
        cost = settings.pop("cost", None)
        if not isinstance(cost, Credits):
            cost = Credits.parse(cost, "cost", allow_zero=True)
        return cls(cost=cost, **settings)

    def reservation(self, queue_depth: int) -> float:
        """The lowest price this seller takes now, in micro-credits (concession maths)."""
        return (self.cost.micro * (1 + self.margin)
                * (1 + self.load_factor * max(0, queue_depth)))

    def ask(self, elapsed: float, horizon: float, queue_depth: int) -> Offer:
        """The seller's offer at this moment of the negotiation.

        The price is rounded up to the micro-credit (a seller never asks below its curve),
        the penalty half-even.
        """
        floor = self.reservation(queue_depth)
        opening = floor * self.markup
        concession = 1.0 - aspiration(elapsed, horizon, self.exponent, 0.0)
        micro = opening - (opening - floor) * concession
        return Offer(price=Credits(math.ceil(micro - 1e-6)), latency_ms=self.latency_ms,
                     deadline_s=self.deadline_s, penalty=self.penalty_for(micro))

    def penalty_for(self, price_micro: float) -> Credits:
        """The penalty offered with a price (`penalty_rate` of it, half-even)."""
        return Credits(round(price_micro * self.penalty_rate))

    def accepts(self, price: Credits, elapsed: float, horizon: float, queue_depth: int) -> bool:
        """True when a counter-offer at `price` is at least what the seller asks now."""
        return price >= self.ask(elapsed, horizon, queue_depth).price
