"""``GET /market/search``: the sellers of a capability, as the running node finds and rates them.

    GET /market/search?capability=forecast.demand&where=region == 'eu'&max_price=2.5&limit=10

`aaex market search --config node.toml` asks this route, so a search goes out through the
node's own DHT host: no short-lived host joins and leaves the network (each one used to be a
peer the DHT then kept trying in vain). Each seller comes with its reputation as this node
knows it (`search_result`), so the operator sees whom the node trusts before buying.

A read route like ``/status``: no token. Each search costs DHT lookups, so at most
`MAX_SEARCHES` run at once (429 beyond) and one takes at most `SEARCH_TIMEOUT_S` (504).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from aaex_agents.errors import TransportError, UsageError
from aaex_agents.money import Credits
from discovery.query import Query, Utility, parse_where
from discovery.records import ServiceAd

from ..consensus.board import ConsensusBook
from ..contracts.reputation import ReputationBook, Score

if TYPE_CHECKING:
    from discovery.dht import Discovery

    from ..trade.market import NodeMarket

MAX_SEARCHES = 4
"""Searches the admin API runs at once; one more is refused (429)."""
SEARCH_TIMEOUT_S = 30.0
"""Longest a search may wait for the DHT (504 after)."""
MAX_SEARCH_LIMIT = 100
"""Most sellers one search lists."""
MAX_TEXT = 200
"""Longest capability or ``where`` text accepted."""


class SearchView(Protocol):
    """What the search route needs of a node: its DHT and its market's reputation book."""

    @property
    def discovery(self) -> Discovery | None:
        """The DHT, when the node joined one."""

    @property
    def market(self) -> NodeMarket:
        """Where the hosted agents buy (its `reputation` rates the sellers)."""


def reputation_document(score: Score | None) -> dict[str, Any] | None:
    """A seller's reputation as JSON; None when no node was asked (a search by seed)."""
    if score is None:
        return None
    return {"score": round(score.score, 4), "raters": score.raters, "receipts": score.receipts}


def search_result(ad: ServiceAd, reputation: ReputationBook | None,
                  consensus: ConsensusBook | None = None) -> dict[str, Any]:
    """One seller found: its ad, its price, its reputation and its consensus incentive.

    ``incentive`` is the seller's share of its capability's emission in the latest epoch
    this node's validators computed (`ConsensusBook`), None when none covers it.

    The ad and price fields are those of `aaex market search --seed --json` (the CLI's
    ``ad_document``): decimal credits with the ``price_micro`` twin, ``price_kind`` and
    ``price_currency``.
    """
    return {**json.loads(ad.model_dump_json()), **ad.price.amount.document("price"),
            "price_kind": ad.price.kind, "price_currency": ad.price.currency,
            "reputation": reputation_document(
                None if reputation is None else reputation.score(ad.address)),
            "incentive": None if consensus is None else consensus.incentive(ad.capability,
                                                                            ad.address)}


def search_query(params: Any) -> Query:
    """The query of a request's parameters.

    Raises:
        UsageError: a parameter is missing or does not parse (the message names it).
    """
    capability = params.get("capability")
    if not capability or len(capability) > MAX_TEXT:
        raise UsageError(f"capability: name one, e.g. forecast.demand (at most {MAX_TEXT} "
                         "characters)")
    where = params.get("where") or None
    if where is not None and len(where) > MAX_TEXT:
        raise UsageError(f"where: at most {MAX_TEXT} characters")
    max_price = params.get("max_price")
    limit = params.get("limit")
    if limit is not None and not (limit.isdigit() and 1 <= int(limit) <= MAX_SEARCH_LIMIT):
        raise UsageError(f"limit: give a whole number from 1 to {MAX_SEARCH_LIMIT}, "
                         f"got {limit!r}")
    return Query(capability, where=parse_where(where) if where else None,
                 max_price=None if max_price is None else Credits.parse(max_price, "max_price"),
                 limit=None if limit is None else int(limit))


class _SearchRoute:
    def __init__(self, node: SearchView) -> None:
        self.node = node
        self.running = 0

    async def search(self, request: web.Request) -> web.Response:
        try:
            query = search_query(request.query)
        except UsageError as exc:
            return _error(400, str(exc))
        discovery = self.node.discovery
        if discovery is None:
            return _error(503, "this node has joined no DHT (node.p2p is empty): it cannot "
                               "search")
        if self.running >= MAX_SEARCHES:
            return _error(429, f"{MAX_SEARCHES} searches are running; try again when one "
                               "ended")
        self.running += 1
        try:
            async with asyncio.timeout(SEARCH_TIMEOUT_S):
                ads = await discovery.lookup(query)
        except TimeoutError:
            return _error(504, f"the DHT did not answer within {SEARCH_TIMEOUT_S:g} s")
        except TransportError as exc:
            return _error(503, f"the DHT is unavailable: {exc}")
        finally:
            self.running -= 1
        ranked = [ad for _, ad in Utility().rank(ads)]
        market = self.node.market
        return web.json_response([search_result(ad, market.reputation, market.consensus)
                                  for ad in ranked])


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def add_search_route(app: web.Application, node: SearchView) -> None:
    """Serve ``GET /market/search`` of `node` on its admin `app`."""
    app.router.add_get("/market/search", _SearchRoute(node).search)
