"""Negotiation strategies: time-based concession over a multi-issue utility.

A side's *aspiration* starts at 1 (its best outcome) and falls to its reservation utility as
the negotiation deadline nears: ``a(t) = 1 - (1 - reserve) * (t / T) ** e``. With e = 4
(Boulware) a side holds firm and concedes late, with e = 1 (linear) evenly, with e = 0.25
(conceder) early. Strategies are plain objects: swap one for another, or write your own with
the same two methods. (NegMAS has these strategies in-process only; here they drive signed
offers between nodes.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aaex_agents.errors import UsageError

BOULWARE, LINEAR, CONCEDER = 4.0, 1.0, 0.25


@dataclass(frozen=True)
class Offer:
    """The issues negotiated: price, promised latency, deadline and the breach penalty."""

    price: float
    latency_ms: float
    deadline_s: float
    penalty: float


@dataclass(frozen=True)
class Weights:
    """How much each issue matters to a buyer (normalised internally)."""

    price: float = 0.5
    latency: float = 0.2
    deadline: float = 0.1
    penalty: float = 0.1
    reputation: float = 0.1


@dataclass(frozen=True)
class BuyerUtility:
    """A buyer's utility of an offer, in [0, 1].

    Cheaper, faster, sooner, better insured and from a better-reputed seller is better; each
    issue is scaled by the buyer's own limits.
    """

    max_price: float
    max_latency_ms: float
    max_deadline_s: float
    wanted_penalty: float = 0.0
    weights: Weights = field(default_factory=Weights)

    def __post_init__(self) -> None:
        if self.max_price <= 0 or self.max_latency_ms <= 0 or self.max_deadline_s <= 0:
            raise UsageError("BuyerUtility limits must be positive")

    def of(self, offer: Offer, reputation: float = 0.5) -> float:
        """Utility of `offer` from a seller with `reputation` in [0, 1]; 0 if out of bounds."""
        if (offer.price > self.max_price or offer.latency_ms > self.max_latency_ms
                or offer.deadline_s > self.max_deadline_s):
            return 0.0
        w = self.weights
        total = w.price + w.latency + w.deadline + w.penalty + w.reputation
        insured = 1.0 if self.wanted_penalty <= 0 else min(1.0, offer.penalty / self.wanted_penalty)
        score = (w.price * (1 - offer.price / self.max_price)
                 + w.latency * (1 - offer.latency_ms / self.max_latency_ms)
                 + w.deadline * (1 - offer.deadline_s / self.max_deadline_s)
                 + w.penalty * insured + w.reputation * reputation)
        return score / total

    def price_for(self, target: float, offer: Offer, reputation: float = 0.5) -> float:
        """The price at which `offer` (other issues kept) reaches utility `target`."""
        at_zero = self.of(Offer(0.0, offer.latency_ms, offer.deadline_s, offer.penalty),
                          reputation)
        w = self.weights
        total = w.price + w.latency + w.deadline + w.penalty + w.reputation
        per_unit = w.price / total / self.max_price  # utility lost per unit of price
        if per_unit <= 0:
            return offer.price
        return max(0.0, min(self.max_price, (at_zero - target) / per_unit))


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

    cost: float
    margin: float = 0.1
    markup: float = 1.6
    exponent: float = BOULWARE
    load_factor: float = 0.05
    latency_ms: float = 500.0
    deadline_s: float = 60.0
    penalty_rate: float = 0.5
    """Penalty offered, as a fraction of the price."""

    def reservation(self, queue_depth: int) -> float:
        """The lowest price this seller takes now."""
        return self.cost * (1 + self.margin) * (1 + self.load_factor * max(0, queue_depth))

    def ask(self, elapsed: float, horizon: float, queue_depth: int) -> Offer:
        """The seller's offer at this moment of the negotiation."""
        floor = self.reservation(queue_depth)
        opening = floor * self.markup
        concession = 1.0 - aspiration(elapsed, horizon, self.exponent, 0.0)
        price = opening - (opening - floor) * concession
        return Offer(price=round(price, 6), latency_ms=self.latency_ms,
                     deadline_s=self.deadline_s, penalty=round(price * self.penalty_rate, 6))

    def accepts(self, price: float, elapsed: float, horizon: float, queue_depth: int) -> bool:
        """True when a counter-offer at `price` is at least what the seller asks now."""
        return price >= self.ask(elapsed, horizon, queue_depth).price - 1e-9
