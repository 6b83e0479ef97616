"""The node's local admin API (JSON) and its Prometheus `/metrics` (see `metrics`).

Read-only views of what the node owns: status, agents, ads held and published, dialogues,
agreements, ledger entries and balances. It listens on loopback by default: it is for the
operator of this appliance, not for peers (peers talk envelopes).
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

from ..contracts.errors import LedgerTampered
from ..trade.negotiation import Seller
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


def build_app(node: Node) -> web.Application:
    """The admin application for `node`."""
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
        rows = []
        for agent in node.runtime.agents.values():
            if isinstance(agent, Seller):
                rows += [{"seller": agent.name, "dialogue": d.id, "buyer": d.buyer,
                          "state": d.state.value, "round": d.round,
                          "price": d.offer.price if d.offer else None}
                         for d in agent.dialogues.values()]
        return _json(rows)

    async def agreements(request: web.Request) -> web.Response:
        signed = await node.ledger.agreements()
        return _json([{"id": s.id, "buyer": s.agreement.buyer, "seller": s.agreement.seller,
                       "capability": s.agreement.terms.capability,
                       "price": s.agreement.terms.price} for s in signed])

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
                      "entries": [{"seq": e.seq, "kind": e.kind, "hash": e.hash}
                                  for e in entries]})

    async def balances(request: web.Request) -> web.Response:
        return _json({a: {"available": b.available, "held": b.held}
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
    return app


@asynccontextmanager
async def serve_admin(node: Node, host: str, port: int) -> AsyncIterator[str]:
    """Serve the admin API until the block exits; yields its base URL once listening."""
    runner = web.AppRunner(build_app(node), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        url = f"http://{host}:{runner.addresses[0][1]}"
        logger.info("admin API at %s", url)
        yield url
    finally:
        await runner.cleanup()


def uptime_since(started: float) -> float:
    """Seconds since `started` (monotonic)."""
    return time.monotonic() - started
