"""The node's market service for the agents it hosts: what `ctx.delegate` reaches.

An agent on a node buys work with ``await ctx.delegate("forecast.demand", task, budget=...,
deadline=...)``. The node answers that with one `Delegator` per buying agent (a delegator
signs agreements as its agent, so it cannot be shared), all of them finding providers through
the node's discovery, settling on the node's ledger and learning from one reputation book.
Each agent spends from its own `Wallet`, sized by the node's ``[market]`` settings, so one
runaway agent cannot spend what the others were given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aaex_agents import Agent
from aaex_agents.errors import UsageError
from discovery.query import Query, Utility, parse_where

from ..contracts.ledger import Ledger
from ..contracts.reputation import ReputationBook
from .delegation import Backoff, Delegator, Finder
from .policy import Wallet

if TYPE_CHECKING:  # the DHT pulls in libp2p; reading a node's config must not
    from discovery.dht import Discovery


@dataclass(frozen=True, kw_only=True)
class MarketSettings:
    """Spending limits and pacing of every buying agent on a node.

    Attributes:
        budget: what one agent may commit in total, in credits.
        per_seller: what one agent may commit to one seller.
        per_task: what one agreement may cost.
        negotiation_window: seconds sellers get to answer a call for proposals.
        ban_seconds: first ban of a provider that failed; doubles on each further failure.
        grace: seconds past an agreement's deadline before an undelivered purchase is
            refunded (a seller's late delivery may still be on its way).
        resolve_period: seconds between passes over the open purchases (see recovery).
    """

    budget: float = 100.0
    per_seller: float = 50.0
    per_task: float = 20.0
    negotiation_window: float = 2.0
    ban_seconds: float = 30.0
    grace: float = 30.0
    resolve_period: float = 5.0

    def __post_init__(self) -> None:
        for name in ("budget", "per_seller", "per_task", "negotiation_window", "ban_seconds",
                     "grace", "resolve_period"):
            if getattr(self, name) <= 0:
                raise UsageError(f"market.{name} must be positive, got {getattr(self, name)}")


def discovery_finder(discovery: Discovery, utility: Utility | None = None) -> Finder:
    """A finder over the DHT: the sellers advertising a capability, best ranked first."""
    ranking = utility or Utility()

    async def find(capability: str, where: str | None) -> list[str]:
        query = Query(capability, where=parse_where(where) if where else None)
        ads = await discovery.lookup(query)
        return [ad.address for _, ad in ranking.rank(ads)]
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
        self.delegators: dict[str, Delegator] = {}

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
                reputation=self.reputation)
            self.delegators[address] = delegator
        return delegator
