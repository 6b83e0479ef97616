"""The node's local admin API (JSON) and its Prometheus `/metrics`.

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

from ..contracts.errors import LedgerTampered
from ..trade.negotiation import Seller

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

# The live web view: one static page that polls the JSON endpoints below (package data).
_PAGE = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")

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

    async def metrics(request: web.Request) -> web.Response:
        recorded, settled = await node.ledger.counts()
        ledger_samples: list[tuple[str, str, dict[str, str], float]] = [
            ("aaex_agreements_total", "Agreements recorded in the ledger", {}, recorded),
            ("aaex_settlements_total", "Agreements settled (paid or refunded)", {}, settled)]
        return web.Response(text=node.metrics_text(ledger_samples), content_type="text/plain",
                            charset="utf-8")

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


def prometheus(samples: list[tuple[str, str, dict[str, str], float]]) -> str:
    """Prometheus text exposition of (name, help, labels, value) samples."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, help_text, labels, value in samples:
        if name not in seen:
            seen.add(name)
            # Prometheus naming: counters, and only counters, end in _total.
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"


def uptime_since(started: float) -> float:
    """Seconds since `started` (monotonic)."""
    return time.monotonic() - started
