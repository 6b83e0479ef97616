"""The node's local admin API (JSON) and its Prometheus `/metrics` (see `metrics`).

Read-only views of what the node owns: status, agents, ads held and published, dialogues,
agreements, ledger entries and balances, the sellers our buying agents ban (``/bans``: the
reason and when it expires), with amounts in decimal credits (and the exact micro-credits as
``*_micro`` fields). The operator's routes that change something (deposit, withdraw,
reconcile, buy, settle) live in `admin_writes` and `admin_payments` and take the token the
node wrote at start.
It listens on loopback by default: it is for the operator of this appliance, not for peers
(peers talk envelopes).

A web page in the operator's browser can still reach loopback, and a DNS name that rebinds
to 127.0.0.1 makes the browser treat our answers as that page's own. So every request must
name the admin API itself in its ``Host`` header (the bound address, ``localhost`` or
``127.0.0.1``, with the bound port), or it is refused with 403. A query parameter that does
not parse is a 400 naming it. ``/ledger`` verifies the chain once per head, not per poll.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from aaex_agents.errors import BadRequestBody, UsageError, quote
from aaex_agents.money import Credits
from aaex_agents.transport.listener import ServerLimits, open_http_listener

from ..contracts.agreement import SignedAgreement
from ..contracts.books import Line, Position
from ..contracts.errors import ContractRejected, LedgerTampered
from ..contracts.ledger import Entry, Ledger
from ..trade.negotiation import Dialogue, DialogueState, Seller
from .admin_audit import add_audit_routes
from .admin_consensus import add_consensus_route, add_validator_routes
from .admin_disputes import DisputeView, add_dispute_routes
from .admin_payments import add_payment_routes
from .admin_search import add_search_route
from .admin_writes import add_operator_routes
from .metrics import MetricsView, node_registry
from .responses import json_response, query_int

if TYPE_CHECKING:
    from discovery.dht import Discovery

logger = logging.getLogger(__name__)

# The live web view: one static page that polls the JSON endpoints below (package data).
_PAGE = resources.files("marketplace.node").joinpath("static/index.html").read_text(
    encoding="utf-8")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def dialogue_state(dialogue: Dialogue, lines: dict[str, Line], delivered: set[str],
                   now_ms: int) -> str:
    """What a seller's dialogue came to, as the seller's books tell it.

    A countersigned dialogue is an agreement only once work follows: one that is not on the
    books, or whose deadline passed with no delivery, reads "countersigned, no task".
    """
    if dialogue.state is not DialogueState.AGREED or dialogue.agreement is None:
        return dialogue.state.value
    try:
        signed = SignedAgreement.from_wire(dialogue.agreement)
    except ContractRejected:
        return "countersigned, unreadable"
    line = lines.get(signed.id)
    if line is not None and line.verdict != "open":
        return f"settled ({line.verdict})"
    if signed.id in delivered:
        return "delivered"
    if line is None or signed.agreement.terms.deadline_ms < now_ms:
        return "countersigned, no task"
    return "agreed"


def _entry_amount(entry: Entry) -> dict[str, Any]:
    """The money an entry moves, if any, in credits."""
    field = {"deposit": "amount", "withdraw": "amount", "hold": "price",
             "release": "to_seller", "refund": "to_buyer"}.get(entry.kind)
    if field is None or not isinstance(entry.body.get(field), int):
        return {}
    return Credits(entry.body[field]).document("amount")


MAX_LEDGER_LIMIT = 1000
"""Most entries one ``/ledger`` answer lists."""
ADMIN_LIMITS = ServerLimits(max_connections=64, max_connections_per_ip=64)
"""The admin API serves one operator on loopback: a terminal or two and the web view."""


def local_host_names(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers that name an admin API bound to `host:port`."""
    literal = f"[{host}]" if ":" in host else host
    names = {literal.lower(), "localhost", "127.0.0.1", "[::1]"}
    return frozenset({f"{name}:{port}" for name in names}
                     | (names if port == 80 else set()))


def _guard(bound: Bound | None) -> Any:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if bound is not None and request.headers.get("Host", "").lower() not in bound.hosts:
            host = quote(request.headers.get("Host", ""))
            return json_response({"error": f"Host {host} is not this admin API; use the URL "
                                           "it printed (http://127.0.0.1:PORT)"}, status=403)
        try:
            return await handler(request)
        except UsageError as exc:
            return json_response({"error": str(exc)}, status=400)
        except BadRequestBody as exc:  # a body over the limit: 413
            return json_response({"error": str(exc)}, status=exc.status)
    return guard


class _VerifiedHead:
    """The last `verify` report and the head it covers: one walk of the chain per head."""

    def __init__(self) -> None:
        self.head: tuple[int, str] | None = None
        self.result: dict[str, Any] = {}
        self.lock = asyncio.Lock()

    async def of(self, ledger: Ledger) -> dict[str, Any]:
        async with self.lock:
            head = await ledger.head()
            if head != self.head:
                try:
                    report = await ledger.verify()
                    self.result = {"verified": True, "problem": None, "head": report.head}
                except LedgerTampered as exc:
                    self.result = {"verified": False, "problem": str(exc), "head": None}
                self.head = head
            return self.result


class AdminView(MetricsView, DisputeView, Protocol):
    """What the admin API reads of a node.

    What `/metrics` and the operator routes read, the ads it publishes and holds, and its
    status document.
    """

    @property
    def discovery(self) -> Discovery | None:
        """The DHT, when the node joined one."""

    def describe(self, admin_url: str) -> dict[str, Any]:
        """The status document, with the admin API at `admin_url`."""
        ...

    def published_ads(self) -> list[dict[str, Any]]:
        """The offers the node advertises, with their acknowledgements."""
        ...


@dataclass
class Bound:
    """Where an admin API listens, filled once its port is bound.

    Until then `hosts` is empty, and every request is refused.
    """

    url: str = ""
    hosts: frozenset[str] = frozenset()


def build_app(node: AdminView, token: str | None = None, *,
              bound: Bound | None = None) -> web.Application:
    """The admin application for `node`; with `token`, also the operator's write routes.

    With `bound`, a request whose ``Host`` header does not name it is refused (403); it is
    read per request, so the caller may fill it once the port is bound.
    """
    app = web.Application(middlewares=[_guard(bound)])
    views = _ReadViews(node, bound or Bound())
    for path, view in (("/", views.page), ("/status", views.status), ("/agents", views.agents),
                       ("/ads", views.ads), ("/dialogues", views.dialogues),
                       ("/agreements", views.agreements), ("/ledger", views.ledger),
                       ("/balances", views.balances), ("/bans", views.bans),
                       ("/metrics", views.metrics)):
        app.router.add_get(path, view)
    add_search_route(app, node)
    add_consensus_route(app, node)
    if token is not None:
        guarded = add_operator_routes(app, node, token)
        add_dispute_routes(app, node, guarded)
        add_payment_routes(app, node, guarded)
        add_audit_routes(app, node, guarded)
        add_validator_routes(app, node, guarded)
    return app


class _ReadViews:
    """The admin API's read-only views of `node`."""

    def __init__(self, node: AdminView, bound: Bound) -> None:
        self.node = node
        self.bound = bound
        self.verified = _VerifiedHead()
        self.registry, self.collector = node_registry(node)

    async def status(self, request: web.Request) -> web.Response:
        return json_response(self.node.describe(self.bound.url))

    async def agents(self, request: web.Request) -> web.Response:
        return json_response([{"name": a.name, "address": a.address, "class": type(a).__name__,
                       "capability": getattr(a, "capability", None)}
                      for a in self.node.runtime.agents.values()])

    async def ads(self, request: web.Request) -> web.Response:
        discovery = self.node.discovery
        held = len(discovery.index) if discovery else 0
        return json_response({"published": self.node.published_ads(),
                              "held_by_this_index_node": held})

    async def dialogues(self, request: web.Request) -> web.Response:
        ledger, runtime = self.node.ledger, self.node.runtime
        lines = {line.agreement_id: line for line in await ledger.lines()}
        delivered = {o.signed.id for o in await ledger.open_agreements()
                     if o.delivery is not None}
        now_ms = runtime.clock.now_ms()
        rows = []
        for agent in runtime.agents.values():
            if isinstance(agent, Seller):
                rows += [{"seller": agent.name, "dialogue": d.id, "buyer": d.buyer,
                          "state": dialogue_state(d, lines, delivered, now_ms),
                          "round": d.round,
                          **(d.offer.price.document("price") if d.offer
                             else {"price": None, "price_micro": None})}
                         for d in agent.dialogues.values()]
        return json_response(rows)

    async def agreements(self, request: web.Request) -> web.Response:
        hosted = {agent.address for agent in self.node.runtime.agents.values()}
        return json_response([{"id": line.agreement_id, "buyer": line.buyer, "seller": line.seller,
                       "side": "sale" if line.seller in hosted else "purchase",
                       "capability": line.capability, **line.price.document("price"),
                       "verdict": line.verdict, "debtor": line.debtor,
                       "creditor": line.creditor, **line.amount.document("owed")}
                      for line in await self.node.ledger.lines()])

    async def ledger(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        limit = query_int(request, "limit", 200, 1, MAX_LEDGER_LIMIT)
        head, _ = await ledger.head()
        entries = await ledger.entries(after=max(0, head - limit), limit=limit)
        return json_response({**await self.verified.of(ledger),
                      "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash,
                                   "agreement": e.body.get("agreement_id"),
                                   "address": e.body.get("address"), **_entry_amount(e)}
                                  for e in entries]})

    async def balances(self, request: web.Request) -> web.Response:
        return json_response({a: {**b.available.document("available"), **b.held.document("held")}
                      for a, b in (await self.node.ledger.balances()).items()})

    async def bans(self, request: web.Request) -> web.Response:
        names = {a.address: a.name for a in self.node.runtime.agents.values()}
        now = self.node.runtime.clock.now()
        return json_response([{"agent": names.get(address, address), "seller": ban.peer,
                       "reason": ban.reason, "failures": ban.failures,
                       "until_ms": int(ban.until * 1000),
                       "expires_in_s": round(ban.until - now, 1)}
                      for address, ban in self.node.market.bans(now)])

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html", charset="utf-8")

    async def metrics(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        # read now; the registry is then read in one go, with no await
        self.collector.ledger_counts = await self.node.ledger.counts()
        self.collector.disputes_open = await self.node.ledger.open_disputes()
        self.collector.disputes_total = await self.node.ledger.disputes_recorded()
        positions = await self.node.ledger.positions()
        self.collector.accounts = {agent.name: positions.get(agent.address, Position())
                                   for agent in self.node.runtime.agents.values()}
        self.collector.bans_total = self.node.market.bans_total()
        self.collector.consensus = self.node.market.consensus
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})


@asynccontextmanager
async def serve_admin(node: AdminView, host: str, port: int, token: str | None = None, *,
                      limits: ServerLimits | None = None) -> AsyncIterator[str]:
    """Serve the admin API until the block exits; yields its base URL once listening.

    With `token`, the operator's write routes are served too (see `admin_writes`). Requests
    must name this API in their ``Host`` header (see the module docstring).

    Raises:
        AddressInUse, TransportError: `host:port` cannot be bound.
    """
    bound = Bound()  # filled once the port is known; until then everything is refused
    app = build_app(node, token, bound=bound)
    async with open_http_listener(app, host, port, limits=limits or ADMIN_LIMITS,
                                  name="admin") as listener:
        bound.hosts = local_host_names(host, listener.port)
        bound.url = f"http://{host}:{listener.port}"
        logger.info("admin API at %s", bound.url)
        yield bound.url


def uptime_since(started: float) -> float:
    """Seconds since `started` (monotonic)."""
    return time.monotonic() - started
