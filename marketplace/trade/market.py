"""The node's market service for the agents it hosts: what `ctx.delegate` reaches.

An agent on a node buys work with ``await ctx.delegate("forecast.demand", task, budget=...,
deadline=...)``. The node answers that with one `Delegator` per buying agent (a delegator
signs agreements as its agent, so it cannot be shared), all of them finding providers through
the node's discovery, settling on the node's ledger and learning from one reputation book.
Each agent spends from its own `Wallet`, sized by the node's ``[market]`` settings, so one
runaway agent cannot spend what the others were given; the same settings weigh price,
latency, deadline, penalty and reputation when a delegator awards.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aaex_agents import Agent
from aaex_agents.address import public_key_from_address
from aaex_agents.errors import UsageError
from aaex_agents.money import ONE_CREDIT, ZERO, Credits
from discovery.query import Query, Utility, parse_where

from ..consensus.board import ConsensusBook
from ..contracts.ledger import Ledger
from ..contracts.reputation import ReputationBook
from .delegation import Backoff, Ban, Delegator, Finder, Found
from .policy import Wallet
from .strategies import MAX_REPUTATION_EXPONENT, Weights

if TYPE_CHECKING:  # the DHT pulls in libp2p; reading a node's config must not
    from discovery.dht import Discovery


@dataclass(frozen=True, kw_only=True)
class MarketSettings:
    """Spending limits, pacing and award weights of every buying agent on a node.

    Attributes:
        budget: what one agent may commit in total (TOML: decimal credits, e.g. 100).
        per_seller: what one agent may commit to one seller.
        per_task: what one agreement may cost.
        negotiation_window: seconds sellers get to answer a call for proposals.
        ban_seconds: first ban of a provider that failed; doubles on each further failure.
        grace: seconds past an agreement's deadline before an undelivered purchase is
            refunded (a seller's late delivery may still be on its way).
        resolve_period: seconds between passes over the open purchases (see recovery).
        price_weight: how much price matters when awarding (weights are relative, >= 0).
        latency_weight: how much the promised latency matters.
        deadline_weight: how much the promised deadline matters.
        penalty_weight: how much the breach penalty (insurance) matters.
        reputation_weight: how much the seller's reputation matters as an issue of its own.
        reputation_exponent: how strongly reputation discounts price (0 to 10; 0 = not at
            all). With 1, a price is judged per delivered result: a seller rated at most
            0.2 never wins over one rated at least 0.8 that charges up to four times as much
            (`marketplace.trade.strategies.BuyerUtility` has the bound and its proof).
        arbiter: the key this node's buyers name in their calls to decide a dispute alone
            (None: disputes end only by both parties' signatures).
        arbiters: the keys this node's sellers accept as arbiter; a call naming another is
            declined (``untrusted_arbiter``): a buyer must not name itself.
    """

    budget: Credits = ONE_CREDIT * 100
    per_seller: Credits = ONE_CREDIT * 50
    per_task: Credits = ONE_CREDIT * 20
    negotiation_window: float = 2.0
    ban_seconds: float = 30.0
    grace: float = 30.0
    resolve_period: float = 5.0
    price_weight: float = 0.5
    latency_weight: float = 0.2
    deadline_weight: float = 0.1
    penalty_weight: float = 0.1
    reputation_weight: float = 0.1
    reputation_exponent: float = 1.0
    arbiter: str | None = None
    arbiters: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("budget", "per_seller", "per_task"):
            if not isinstance(getattr(self, name), Credits) or getattr(self, name) <= ZERO:
                raise UsageError(f"market.{name} must be positive credits, got "
                                 f"{getattr(self, name)!r}")
        for key in ([self.arbiter] if self.arbiter is not None else []) + list(self.arbiters):
            try:
                public_key_from_address(key)
            except UsageError as exc:
                raise UsageError(f"market.arbiter(s): {exc}") from None
        for name in ("negotiation_window", "ban_seconds", "grace", "resolve_period"):
            if getattr(self, name) <= 0:
                raise UsageError(f"market.{name} must be positive, got {getattr(self, name)}")
        weights = ("price_weight", "latency_weight", "deadline_weight", "penalty_weight",
                   "reputation_weight")
        for name in weights:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"market.{name} must be a finite number >= 0, got {value}")
        if sum(getattr(self, name) for name in weights) <= 0:
            raise UsageError("market.*_weight: at least one weight must be positive")
        if not 0 <= self.reputation_exponent <= MAX_REPUTATION_EXPONENT:
            raise UsageError(f"market.reputation_exponent must be between 0 and "
                             f"{MAX_REPUTATION_EXPONENT:g}, got {self.reputation_exponent}")

    def weights(self) -> Weights:
        """The award weights every delegator of the node uses."""
        return Weights(price=self.price_weight, latency=self.latency_weight,
                       deadline=self.deadline_weight, penalty=self.penalty_weight,
                       reputation=self.reputation_weight,
                       reputation_exponent=self.reputation_exponent)


def discovery_finder(discovery: Discovery, utility: Utility | None = None) -> Finder:
    """A finder over the DHT: the sellers advertising a capability, best ranked first.

    Each comes with the task schema its ad states; the delegator checks the task against it.
    """
    ranking = utility or Utility()

    async def find(capability: str, where: str | None) -> list[str | Found]:
        query = Query(capability, where=parse_where(where) if where else None)
        ads = await discovery.lookup(query)
        return [Found(ad.address, ad.task_schema) for _, ad in ranking.rank(ads)]
    return find


class NodeMarket:
    """Delegation for every agent of a node (an `aaex_agents.services.Market`).

    Pass it as ``open_runtime(..., services=Services(market=...))``; `ctx.delegate` then
    reaches the delegator of the calling agent, never another's.
    """

    def __init__(self, agents: Mapping[str, Agent], *, find: Finder, ledger: Ledger | None,
                 settings: MarketSettings | None = None) -> None:
        self._agents = agents
        self._find = find
        self._ledger = ledger
        self.settings = settings or MarketSettings()
        self.reputation = ReputationBook()
        self.consensus = ConsensusBook()
        """What validators hosted here computed; every delegator's awards read it."""
        self.delegators: dict[str, Delegator] = {}

    def bans(self, now: float) -> list[tuple[str, Ban]]:
        """(our buying agent's address, a ban it holds) for every ban in force at `now`."""
        return [(address, ban) for address, delegator in self.delegators.items()
                for ban in delegator.backoff.active(now)]

    def bans_total(self) -> int:
        """Bans our buying agents imposed since start."""
        return sum(d.backoff.bans_total for d in self.delegators.values())

    def for_agent(self, address: str) -> Delegator:
        """The delegator that buys for the hosted agent at `address` (made on first use).

        Raises:
            UsageError: no agent with that address is hosted here.
        """
        delegator = self.delegators.get(address)
        if delegator is None:
            agent = self._agents.get(address)
            if agent is None:
                raise UsageError(f"{address} is not an agent of this node")
            s = self.settings
            delegator = Delegator(
                agent.identity, find=self._find,
                wallet=Wallet(budget=s.budget, per_seller=s.per_seller, per_task=s.per_task),
                books=self._ledger,
                backoff=Backoff(base=s.ban_seconds), negotiation_window=s.negotiation_window,
                reputation=self.reputation, weights=s.weights(), arbiter=s.arbiter,
                consensus=self.consensus)
            self.delegators[address] = delegator
        return delegator
