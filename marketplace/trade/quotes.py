"""Standing quotes: a seller stands by its last offer in a lost negotiation for a while.

A buyer awards one seller and keeps the runner-up's bid as its fallback. If the winner then
fails, the buyer calls the runner-up again naming the earlier dialogue (``hold``), and the
seller answers with the offer it last made there, for the same task, instead of opening its
concession curve again: the price it bid is what the retry costs. Without this the retry's
price would depend on when in a fresh window the buyer accepted.

Held per buyer (`PER_BUYER`, oldest dropped first) and in all (`KEPT`), each for `HOLD_S`
seconds, so no buyer can grow a seller's memory or spend another buyer's share.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .strategies import Offer

HOLD_S = 600.0
"""How long a seller stands by its last offer of a lost dialogue."""
PER_BUYER = 16
"""Standing quotes kept for one buyer key (its oldest dropped first)."""
KEPT = 10_000
"""Standing quotes kept in all (the oldest dropped first)."""


@dataclass(frozen=True, slots=True)
class _Quote:
    offer: Offer
    task: str
    """The task's hash: a quote stands for the task it priced, no other."""
    until: float


class StandingQuotes:
    """The last offers of a seller's lost dialogues, by buyer, then dialogue id."""

    def __init__(self) -> None:
        self._quotes: OrderedDict[tuple[str, str], _Quote] = OrderedDict()
        """Every quote, oldest first: the one dropped when `KEPT` are held."""
        self._by_buyer: dict[str, OrderedDict[str, None]] = {}
        """Each buyer's dialogue ids, oldest first: its own oldest gives way at `PER_BUYER`."""

    def __len__(self) -> int:
        return len(self._quotes)

    def keep(self, buyer: str, dialogue: str, offer: Offer, task: str, now: float) -> None:
        """Stand by `offer`, made to `buyer` in `dialogue` for the task hashed `task`."""
        if (buyer, dialogue) in self._quotes:
            self._forget((buyer, dialogue))
        mine = self._by_buyer.get(buyer)
        if mine is not None and len(mine) >= PER_BUYER:
            self._forget((buyer, next(iter(mine))))
        if len(self._quotes) >= KEPT:
            self._forget(next(iter(self._quotes)))
        self._quotes[(buyer, dialogue)] = _Quote(offer, task, now + HOLD_S)
        self._by_buyer.setdefault(buyer, OrderedDict())[dialogue] = None

    def take(self, buyer: str, dialogue: str, task: str, now: float) -> Offer | None:
        """The offer `buyer` was made in `dialogue` for this task, if it still stands."""
        quote = self._quotes.get((buyer, dialogue))
        if quote is None:
            return None
        self._forget((buyer, dialogue))
        return quote.offer if quote.task == task and now <= quote.until else None

    def _forget(self, key: tuple[str, str]) -> None:
        del self._quotes[key]
        mine = self._by_buyer[key[0]]
        del mine[key[1]]
        if not mine:
            del self._by_buyer[key[0]]
