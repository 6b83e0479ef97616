"""The node's local admin API (JSON) and its Prometheus `/metrics` (see `metrics`).

Read-only views of what the node owns: status, agents, ads held and published, dialogues,
agreements, ledger entries and balances, with amounts in decimal credits (and the exact
micro-credits as ``*_micro`` fields). The operator's routes that change something (deposit,
withdraw, reconcile, buy) live in `admin_writes` and take the token the node wrote at start.
It listens on loopback by default: it is for the operator of this appliance, not for peers
(peers talk envelopes).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from aaex_agents.transport.listener import ServerLimits, open_http_listener

from ..contracts.agreement import SignedAgreement
from ..contracts.books import Line
from ..contracts.errors import ContractRejected, LedgerTampered
from ..contracts.ledger import Entry
from ..trade.negotiation import Dialogue, DialogueState, Seller
from .accounts import money
from .admin_writes import add_operator_routes
from .metrics import node_registry

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

# The live web view: one static page that polls the JSON endpoints below (package data).
_PAGE = resources.files("marketplace.node").joinpath("static/index.html").read_text(
    encoding="utf-8")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(document: Any) -> web.Response:
    return web.Response(text=json.dumps(document, default=str, indent=1),
                        content_type="application/json")


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
    return money("amount", entry.body[field])


ADMIN_LIMITS = ServerLimits(max_connections=64, max_connections_per_ip=64)
"""The admin API serves one operator on loopback: a terminal or two and the web view."""


def build_app(node: Node, token: str | None = None) -> web.Application:
    """The admin application for `node`; with `token`, also the operator's write routes."""
    app = web.Application()

    async def status(request: web.Request) -> web.Response:
        return _json(node.status())

    async def agents(request: web.Request) -> web.Response:
        return _json([{"name": a.name, "address": a.address, "class": type(a).__name__,
                       "capability": getattr(a, "capability", None)}
                      for a in node.runtime.agents.values()])

    async def ads(request: web.Request) -> web.Response:
        held = len(node.discovery.index) if node.discovery else 0
        return _json({"published": node.published_ads(), "held_by_this_index_node": held})

    async def dialogues(request: web.Request) -> web.Response:
        lines = {line.agreement_id: line for line in await node.ledger.lines()}
        delivered = {o.signed.id for o in await node.ledger.open_agreements()
                     if o.delivery is not None}
        now_ms = int(node.runtime.clock.now() * 1000)
        rows = []
        for agent in node.runtime.agents.values():
            if isinstance(agent, Seller):
                rows += [{"seller": agent.name, "dialogue": d.id, "buyer": d.buyer,
                          "state": dialogue_state(d, lines, delivered, now_ms),
                          "round": d.round,
                          "price": round(d.offer.price, 6) if d.offer else None}
                         for d in agent.dialogues.values()]
        return _json(rows)

    async def agreements(request: web.Request) -> web.Response:
        hosted = {agent.address for agent in node.runtime.agents.values()}
        return _json([{"id": line.agreement_id, "buyer": line.buyer, "seller": line.seller,
                       "side": "sale" if line.seller in hosted else "purchase",
                       "capability": line.capability, **money("price", line.price),
                       "verdict": line.verdict, "debtor": line.debtor,
                       "creditor": line.creditor, **money("owed", line.amount)}
                      for line in await node.ledger.lines()])

    async def ledger(request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", "200"))
        head, _ = await node.ledger.head()
        entries = await node.ledger.entries(after=max(0, head - limit), limit=limit)
        try:
            report = await node.ledger.verify()
            verified, problem, head_hash = True, None, report.head
        except LedgerTampered as exc:
            verified, problem, head_hash = False, str(exc), None
        return _json({"verified": verified, "problem": problem, "head": head_hash,
                      "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash,
                                   "agreement": e.body.get("agreement_id"),
                                   "address": e.body.get("address"), **_entry_amount(e)}
                                  for e in entries]})

    async def balances(request: web.Request) -> web.Response:
        return _json({a: {**money("available", b.available), **money("held", b.held)}
                      for a, b in (await node.ledger.balances()).items()})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html", charset="utf-8")

    registry, collector = node_registry(node)

    async def metrics(request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        collector.ledger_counts = await node.ledger.counts()  # then read in one go, no await
        return web.Response(body=encode(registry), headers={"Content-Type": content_type})

    for path, view in (("/", page), ("/status", status), ("/agents", agents), ("/ads", ads),
                       ("/dialogues", dialogues), ("/agreements", agreements),
                       ("/ledger", ledger), ("/balances", balances), ("/metrics", metrics)):
        app.router.add_get(path, view)
    if token is not None:
        add_operator_routes(app, node, token)
    return app


@asynccontextmanager
async def serve_admin(node: Node, host: str, port: int, token: str | None = None, *,
                      limits: ServerLimits | None = None) -> AsyncIterator[str]:
    """Serve the admin API until the block exits; yields its base URL once listening.

    With `token`, the operator's write routes are served too (see `admin_writes`).

    Raises:
        AddressInUse, TransportError: `host:port` cannot be bound.
    """
    app = build_app(node, token)
    async with open_http_listener(app, host, port, limits=limits or ADMIN_LIMITS,
                                  name="admin") as listener:
        url = f"http://{host}:{listener.port}"
        logger.info("admin API at %s", url)
        yield url


def uptime_since(started: float) -> float:
    """Seconds since `started` (monotonic)."""
    return time.monotonic() - started
