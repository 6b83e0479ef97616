"""Awards as the buyer explains them, and the runner-up kept as the winner's fallback.

Each bid as an event carries it, why the winner won, and the bid turned to if the winner
fails: what an operator watching a purchase reads (``aaex market buy``, the supply-chain demo's
market view); the delegation loop in marketplace.trade.delegation reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aaex_agents.money import Credits

from .negotiation import Bid, NegotiationResult


def bid_document(bid: Bid, reputation: float | None) -> dict[str, Any]:
    """One seller's bid as the ``offers`` event carries it (see `Progress`)."""
    if bid.offer is None:
        return {"seller": bid.seller, "declined": bid.declined, "detail": bid.detail,
                "price": None, "price_micro": None, "reputation": reputation}
    offer = bid.offer
    return {"seller": bid.seller, "declined": None, "detail": bid.detail,
            **offer.price.document("price"), "latency_ms": offer.latency_ms,
            "deadline_s": offer.deadline_s, **offer.penalty.document("penalty"),
            "reputation": reputation, "utility": round(bid.utility, 4)}


@dataclass(frozen=True, slots=True)
class Fallback:
    """A runner-up's bid the buyer turns to if the winner fails (`marketplace.trade.quotes`)."""

    seller: str
    dialogue: str
    """The negotiation it bid in: the seller stands by its last offer there."""
    price: Credits


def _live_bids(outcome: NegotiationResult) -> list[Bid]:
    """The bids that ended with an offer standing, best utility first."""
    return sorted((b for b in outcome.bids if b.offer is not None),
                  key=lambda b: (-b.utility, b.seller))


def runner_up(outcome: NegotiationResult) -> Bid | None:
    """The best standing bid other than the winner's: the buyer's fallback if it fails."""
    return next((b for b in _live_bids(outcome) if b.seller != outcome.winner), None)


def award_reason(outcome: NegotiationResult) -> dict[str, Any]:
    """Why the winner won, for the buyer's operator to judge the award.

    ``why``: its utility (price, latency, deadline, penalty and reputation weighed by the
    buyer) against the best other bid's, or that it bid alone; ``runner_up``: that other
    bidder's address (None when there was none), the seller turned to if the winner fails.
    """
    live = _live_bids(outcome)
    won = next((b for b in live if b.seller == outcome.winner), None)
    others = [b for b in live if b.seller != outcome.winner]
    if won is None:
        return {"why": "the only agreement reached", "runner_up": None}
    if not others:
        return {"why": f"the only bid in time (utility {won.utility:.3f})", "runner_up": None}
    if others[0].utility > won.utility:  # the better bidder did not countersign in time
        return {"why": f"utility {won.utility:.3f}: {others[0].seller} bid higher "
                       f"({others[0].utility:.3f}) but did not conclude the agreement",
                "runner_up": others[0].seller}
    return {"why": f"highest utility {won.utility:.3f} against the runner-up's "
                   f"{others[0].utility:.3f}", "runner_up": others[0].seller}
