"""``GET /consensus``: what the validators' consensus says of each capability's sellers.

    GET /consensus              the latest epoch of every capability
    GET /consensus?epoch=12     epoch 12, where it is still kept (`KEPT_EPOCHS`)
    GET /validators             the validators this node hosts and what they scored last

The document is `ConsensusBook.document`: per capability, the epoch and every seller's
incentive (a fraction of the emission) and quality (incentive over the best seller's, what
awards blend with receipt reputation; docs/consensus.md). A read route like ``/status``: no
token. ``aaex consensus show`` prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from aaex_agents.errors import quote

from .responses import json_response
from .validators import validators_document

if TYPE_CHECKING:
    from aaex_agents.runtime import Runtime

    from ..trade.market import NodeMarket

MAX_EPOCH = 2**63 - 1
"""The largest epoch number the route takes."""


class ConsensusView(Protocol):
    """What the routes need of a node: its market (the `ConsensusBook`) and its agents."""

    @property
    def runtime(self) -> Runtime:
        """The hosted agents (``/validators`` lists the `Validator`s among them)."""

    @property
    def market(self) -> NodeMarket:
        """Where the hosted agents buy; `market.consensus` is what validators computed."""


def add_consensus_route(app: web.Application, node: ConsensusView) -> None:
    """Serve ``GET /consensus`` on `app`."""
    async def consensus(request: web.Request) -> web.Response:
        text = request.query.get("epoch")
        if text is not None and not (text.isdigit() and int(text) <= MAX_EPOCH):
            return json_response({"error": f"epoch: give a whole number from 0, got "
                                           f"{quote(text[:40])}"}, status=400)
        epoch = None if text is None else int(text)
        return json_response(node.market.consensus.document(epoch))

    async def validators(request: web.Request) -> web.Response:
        return json_response(validators_document(node.runtime.agents.values()))

    app.router.add_get("/consensus", consensus)
    app.router.add_get("/validators", validators)
