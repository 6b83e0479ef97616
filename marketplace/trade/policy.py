"""Access control and spending policy: the rules LLM-driven code cannot talk its way past.

- `AccessControl` is a seller's gate: per-capability whitelists of partner agents or
  organisations, and a per-peer rate limit. Its `admit` raises `Refusal`, which the seller
  answers with a signed `Decline` naming the reason — and no data.
- `Wallet` is a buyer's only way to sign an agreement: it checks the budget, the per-seller
  limit and the per-task ceiling first. An LLM may suggest a price; only this code signs.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from aaex_agents.errors import UsageError
from aaex_agents.money import ZERO, Credits

from .errors import Refusal, SpendingRefused
from .negotiation import AgreementSigner, CallForProposals
from .strategies import Offer


@dataclass(frozen=True, kw_only=True)
class AccessList:
    """Who may buy one capability.

    Attributes:
        open: anyone may buy (the lists are ignored).
        agents: addresses allowed by name.
        organisations: organisation names allowed; membership comes from `AccessControl`.
    """

    open: bool = False
    agents: frozenset[str] = frozenset()
    organisations: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """At most `burst` calls at once, refilled at `per_second` calls per second, per peer."""

    per_second: float = 5.0
    burst: int = 20

    def __post_init__(self) -> None:
        if self.per_second <= 0 or self.burst < 1:
            raise UsageError("RateLimit.per_second must be positive and burst at least 1")


class PeerBuckets:
    """One token bucket per peer, under one `RateLimit`, in bounded memory.

    Each peer spends its own allowance: a flood from one key never slows another. Past
    `max_peers`, the peer seen longest ago is forgotten (it comes back with a full bucket,
    which costs a flooder of fresh keys nothing it could not get with a new key anyway).
    """

    def __init__(self, rate: RateLimit, *, max_peers: int = 100_000) -> None:
        self.rate = rate
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._max_peers = max_peers

    def take(self, peer: str, now: float) -> bool:
        """Spend one call of `peer`'s allowance at `now` (seconds); False when used up."""
        tokens, last = self._buckets.pop(peer, (float(self.rate.burst), now))
        tokens = min(float(self.rate.burst), tokens + max(0.0, now - last) * self.rate.per_second)
        allowed = tokens >= 1.0
        self._buckets[peer] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max_peers:  # bounded memory: forget the stalest peer
            self._buckets.popitem(last=False)
        return allowed


class AccessControl:
    """A seller's whitelist and rate limiter (the `admit` hook of `Seller`)."""

    def __init__(self, lists: Mapping[str, AccessList], *,
                 members: Mapping[str, Iterable[str]] | None = None,
                 rate: RateLimit | None = None, max_peers: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lists = dict(lists)
        self._organisation_of: dict[str, set[str]] = {}
        for organisation, addresses in (members or {}).items():
            for address in addresses:
                self._organisation_of.setdefault(address, set()).add(organisation)
        self._rate = rate or RateLimit()
        self._buckets = PeerBuckets(self._rate, max_peers=max_peers)
        self._clock = clock

    def allowed(self, buyer: str, capability: str) -> bool:
        """True when `buyer` may buy `capability` (an unlisted capability is closed)."""
        rules = self._lists.get(capability)
        if rules is None:
            return False
        return rules.open or buyer in rules.agents or bool(
            self._organisation_of.get(buyer, set()) & rules.organisations)

    def take_token(self, peer: str) -> bool:
        """Spend one call of `peer`'s allowance; False when it is used up."""
        return self._buckets.take(peer, self._clock())

    async def admit(self, buyer: str, cfp: CallForProposals) -> None:
        """Raise Refusal unless `buyer` is allowed and within its rate."""
        if not self.take_token(buyer):
            raise Refusal("rate_limited", f"more than {self._rate.per_second}/s; slow down")
        if not self.allowed(buyer, cfp.capability):
            raise Refusal("not_whitelisted",
                          f"{cfp.capability} is sold only to partner agents and organisations")


@dataclass(kw_only=True)
class Wallet:
    """Holds the buyer's budget and signs agreements only within it.

    Attributes:
        budget: total that may be committed.
        per_seller: most that may be committed to one seller.
        per_task: most one agreement may cost.
    """

    budget: Credits
    per_seller: Credits
    per_task: Credits
    spent: Credits = ZERO
    by_seller: dict[str, Credits] = field(default_factory=dict)

    def check(self, seller: str, price: Credits) -> None:
        """Raise SpendingRefused when paying `price` to `seller` breaks a limit."""
        if price > self.per_task:
            raise SpendingRefused(f"{price} credits exceed the per-task limit of "
                                  f"{self.per_task}")
        if self.by_seller.get(seller, ZERO) + price > self.per_seller:
            raise SpendingRefused(f"{seller} would get more than the per-seller limit of "
                                  f"{self.per_seller} credits")
        if self.spent + price > self.budget:
            raise SpendingRefused(f"{price} credits exceed the remaining budget of "
                                  f"{self.budget - self.spent}")

    def guard(self, sign: AgreementSigner) -> AgreementSigner:
        """Wrap `sign` so that it signs only agreements the policy allows, and books them."""
        def guarded(dialogue: str, seller: str, cfp: CallForProposals, offer: Offer) -> bytes:
            self.check(seller, offer.price)
            signed = sign(dialogue, seller, cfp, offer)
            self.spent += offer.price
            self.by_seller[seller] = self.by_seller.get(seller, ZERO) + offer.price
            return signed
        return guarded

    def release(self, seller: str, amount: Credits) -> None:
        """Give back budget committed to an agreement that was never concluded or refunded."""
        self.spent = max(ZERO, self.spent - amount)
        self.by_seller[seller] = max(ZERO, self.by_seller.get(seller, ZERO) - amount)
