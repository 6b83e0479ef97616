"""What the market showed the planner for each subtask: sellers found, bids, awards and why.

The planner keeps each subtask's market events (`agents.Subtask.market`, the market's
`DelegationProgress` events); this module writes them for a person (a console line per bid
round and per award) and for the report (the rounds and awards, providers by name). Amounts
are decimal credits with their ``*_micro`` twin, as the market gives them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _name(address: Any, names: Mapping[str, str]) -> str:
    return names.get(str(address), str(address)[:16])


def _bid_text(bid: Mapping[str, Any], names: Mapping[str, str]) -> str:
    who = _name(bid.get("seller"), names)
    if bid.get("price") is None:
        return f"{who} declined ({bid.get('declined')})"
    reputation = bid.get("reputation")
    rated = "unrated" if reputation is None else f"reputation {reputation:.2f}"
    return (f"{who} {bid['price']} credits, {bid['latency_ms'] / 1000:.0f} s, {rated}, "
            f"utility {bid['utility']:.3f}")


def market_line(label: str, event: str, details: Mapping[str, Any],
                names: Mapping[str, str]) -> str | None:
    """The console line of one market event of subtask `label`; None for events not shown."""
    if event == "sellers":
        found = [_name(s, names) for s in details.get("found", [])]
        return f"{label}: {len(found)} seller(s) found: {', '.join(found) or 'none'}"
    if event == "fallback":
        return (f"{label}: the winner failed; the runner-up {_name(details.get('seller'), names)}"
                f" is held to its bid of {details.get('price')} credits")
    if event == "offers":
        bids = [_bid_text(b, names) for b in details.get("offers", [])]
        return f"{label}: bids: {'; '.join(bids) or 'none'}"
    if event == "agreement":
        runner_up = details.get("runner_up")
        return (f"{label}: awarded to {_name(details.get('seller'), names)} at "
                f"{details.get('price')} credits: {details.get('why')}"
                + ("" if runner_up is None else f" ({_name(runner_up, names)})"))
    if event == "settled":
        return (f"{label}: settled {details.get('verdict')}: {details.get('to_seller')} "
                f"credits paid, {details.get('to_buyer')} back")
    return None


def market_document(events: list[dict[str, Any]], names: Mapping[str, str]
                    ) -> list[dict[str, Any]]:
    """A subtask's market for the report: per round, the sellers invited, their bids and the
    award (None: no agreement that round) and, in a round after a failed winner, the runner-up
    held to its earlier bid (`fallback`; None otherwise), providers by name."""
    rounds: list[dict[str, Any]] = []
    held: dict[str, Any] | None = None
    for event in events:
        kind = event.get("event")
        if kind == "fallback":
            held = {"provider": _name(event.get("seller"), names), "price": event.get("price"),
                    "price_micro": event.get("price_micro")}
        elif kind == "sellers":
            rounds.append({"sellers": [_name(s, names) for s in event.get("found", [])],
                           "bids": [], "award": None, "fallback": held})
            held = None
        elif kind == "offers" and rounds:
            rounds[-1]["bids"] = [{**bid, "provider": _name(bid.get("seller"), names)}
                                  for bid in event.get("offers", [])]
        elif kind == "agreement" and rounds:
            rounds[-1]["award"] = {"provider": _name(event.get("seller"), names),
                                   "agreement_id": event.get("agreement_id"),
                                   "price": event.get("price"),
                                   "price_micro": event.get("price_micro"),
                                   "why": event.get("why"),
                                   "runner_up": None if event.get("runner_up") is None
                                   else _name(event["runner_up"], names)}
    return rounds
