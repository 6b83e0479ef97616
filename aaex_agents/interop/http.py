"""uAgents' HTTP face: ``POST /submit`` for envelopes, ``HEAD /submit`` for readiness.

Status codes as uAgents uses them: 200 with ``{}`` (or, for a sync request, the reply
envelope), 400 ``{"error": ..., "reason": ...}`` for a refused envelope (`reason` is AAEX's
rejection code; uAgents reads `error`), 413 for a body over the frame limit, and 503 with
reason ``busy`` for a sync request beyond the gateway's holds (per address or in all).

The body is read whole, up to the frame limit, however the network split it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from ..errors import EnvelopeRejected
from ..transport.bodies import read_body
from ..transport.listener import open_http_listener
from .gateway import UAgentsGateway

logger = logging.getLogger(__name__)

SUBMIT_PATH = "/submit"
_STATUS = {"oversize": 413, "busy": 503}
"""HTTP status of a refusal by reason; every other reason is 400."""


def add_uagents_routes(app: web.Application, gateway: UAgentsGateway) -> None:
    """Serve `gateway` at ``/submit`` of `app` (POST envelopes, HEAD readiness)."""

    async def submit(request: web.Request) -> web.Response:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return _refusal(400, "malformed", "invalid content-type; send application/json")
        length = request.content_length
        limit = gateway.config.policy.max_frame_bytes
        if length is not None and length > limit:
            return _refusal(413, "oversize", f"{length} bytes exceeds the limit of {limit}")
        body = await read_body(request.content, limit)
        if body is None:
            return _refusal(413, "oversize", f"body exceeds the limit of {limit} bytes")
        sync = request.headers.get("x-uagents-connection") == "sync"
        try:
            reply = await gateway.submit(body, sync=sync, client=request.remote or "?")
        except EnvelopeRejected as exc:
            return _refusal(_STATUS.get(exc.reason, 400), exc.reason, str(exc))
        if reply is None:
            return web.json_response({})
        return web.Response(body=reply.to_json(), content_type="application/json")

    async def readiness(request: web.Request) -> web.Response:
        status = gateway.readiness(request.headers.get("x-uagents-address"))
        return web.Response(headers={"x-uagents-status": status})

    app.router.add_post(SUBMIT_PATH, submit)
    app.router.add_route("HEAD", SUBMIT_PATH, readiness)


@asynccontextmanager
async def serve_uagents(gateway: UAgentsGateway, host: str = "127.0.0.1",
                        port: int = 0) -> AsyncIterator[str]:
    """Serve only ``/submit`` on `host:port` until the block exits; yields its URL.

    The listener has the default `ServerLimits` (see `aaex_agents.transport.listener`).
    """
    app = web.Application(client_max_size=gateway.config.policy.max_frame_bytes + 1)
    add_uagents_routes(app, gateway)
    async with open_http_listener(app, host, port, name="uagents") as listener:
        url = f"http://{host}:{listener.port}{SUBMIT_PATH}"
        logger.info("serving uAgents envelopes at %s", url)
        yield url


def _refusal(status: int, reason: str, detail: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": detail, "reason": reason}),
                        content_type="application/json")
