"""The admin API's dispute routes: list, show, export evidence, resolve.

    GET  /disputes                      every dispute on the books, open ones first
    GET  /disputes/{agreement_id}       one, with the partner's resolution offer if any
    GET  /disputes/{agreement_id}/evidence   the signed evidence bundle (aaex dispute export)
    POST /disputes/{agreement_id}/resolve   {"to_seller": CREDITS, "penalty": CREDITS[, "note"]}
                                            or {"decision": SIGNED RESOLUTION}

A resolution the operator signs goes to the partner: signed by one party it is an offer,
and the dispute ends on both books once the other party's operator signs the same terms (or
when the arbiter the agreement names signed a decision). POSTs need the admin token.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from aaex_agents import Agent
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.money import Credits

from ..contracts.dispute import Resolution, SignedResolution
from ..contracts.errors import ContractRejected
from ..contracts.evidence import export_evidence
from ..contracts.ledger import DisputeRecord
from ..trade.disputes import ResolutionNotice, ResolutionTaken
from .admin_writes import OperatorView, json_body
from .responses import json_response

if TYPE_CHECKING:
    from ..trade.desk import MarketDesk

logger = logging.getLogger(__name__)


class DisputeView(OperatorView, Protocol):
    """What the dispute routes need of a node: the operator's view and its market desk."""

    @property
    def desk(self) -> MarketDesk:
        """Where partners' resolution offers wait."""


def dispute_document(record: DisputeRecord,
                     offer: SignedResolution | None = None) -> dict[str, Any]:
    """One dispute as the admin API and the CLI show it."""
    dispute, a = record.dispute.dispute, record.signed.agreement
    document: dict[str, Any] = {
        "agreement_id": record.signed.id, "dispute_id": record.dispute.id,
        "capability": a.terms.capability, "buyer": a.buyer, "seller": a.seller,
        "role": record.role, "raised_by": dispute.party,
        "status": "resolved" if record.resolution is not None else "open",
        "after_settlement": record.after_settlement, **a.terms.price.document("price"),
        "arbiter": a.terms.arbiter,
        "conflicts": [c.model_dump() for c in dispute.conflicts]}
    if record.resolution is not None:
        document["resolution"] = _terms(record.resolution)
    if offer is not None:
        document["offer"] = _terms(offer)
    return document


def _terms(signed: SignedResolution) -> dict[str, Any]:
    r = signed.resolution
    return {"resolution_id": r.id, **r.to_seller.document("to_seller"),
            **r.to_buyer.document("to_buyer"), **r.penalty.document("penalty"),
            "note": r.note, "signed_by": sorted(signed.signatures)}


def add_dispute_routes(app: web.Application, node: DisputeView,
                       guarded: Any) -> None:
    """Add the dispute routes; `guarded(view, write=...)` applies the token and the errors."""
    routes = _DisputeRoutes(node)
    app.router.add_get("/disputes", guarded(routes.list, write=False))
    app.router.add_get("/disputes/{agreement_id}", guarded(routes.show, write=False))
    app.router.add_get("/disputes/{agreement_id}/evidence",
                       guarded(routes.evidence, write=False))
    app.router.add_post("/disputes/{agreement_id}/resolve", guarded(routes.resolve, write=True))



class _DisputeRoutes:
    def __init__(self, node: DisputeView) -> None:
        self.node = node

    async def record(self, request: web.Request) -> DisputeRecord:
        wanted = request.match_info["agreement_id"]
        for record in await self.node.ledger.disputes():
            if record.signed.id == wanted or (len(wanted) >= 8
                                              and record.signed.id.startswith(wanted)):
                return record
        raise web.HTTPNotFound(text=json.dumps({"error": f"no dispute over agreement "
                                                         f"{wanted[:64]} on these books"}),
                               content_type="application/json")

    async def list(self, request: web.Request) -> web.Response:
        offers = self.node.desk.resolutions.offers
        records = await self.node.ledger.disputes()
        records.sort(key=lambda r: (r.resolution is not None, r.seq))
        return json_response([dispute_document(r, offers.get(r.signed.id)) for r in records])

    async def show(self, request: web.Request) -> web.Response:
        record = await self.record(request)
        return json_response(dispute_document(record,
                                      self.node.desk.resolutions.offers.get(record.signed.id)))

    async def evidence(self, request: web.Request) -> web.Response:
        record = await self.record(request)
        bundle = export_evidence(record.signed, record.dispute, record.delivery,
                                 record.resolution, exporter=self.node.identity,
                                 now_ms=self.node.runtime.clock.now_ms())
        return json_response(bundle.model_dump(mode="json"))

    def party(self, record: DisputeRecord) -> Agent:
        a = record.signed.agreement
        for address in (a.buyer, a.seller):
            agent = self.node.runtime.agents.get(address)
            if agent is not None:
                return agent
        raise UsageError("no agent of this node is a party of that agreement")

    async def resolve(self, request: web.Request) -> web.Response:
        record = await self.record(request)
        if record.resolution is not None:
            return json_response({"error": "this dispute is already resolved"}, 409)
        agent = self.party(record)
        body = await json_body(request)
        signed = self.decision(body) if "decision" in body else self.signed_terms(
            record, agent, body)
        a = record.signed.agreement
        partner = a.seller if agent.address == a.buyer else a.buyer
        try:
            signed.verify_against(record.signed)
        except ContractRejected:  # our half: an offer for the partner to sign
            signed.verify_against(record.signed, complete=False)
            answer = await self.send(agent, partner, signed)
            return json_response({"outcome": "offered", "partner": answer, **_terms(signed)})
        await self.node.ledger.resolve(signed)
        await self.node.desk.resolutions.forget(record.signed.id)
        answer = await self.send(agent, partner, signed)
        return json_response({"outcome": "resolved", "partner": answer, **_terms(signed)})

    def decision(self, body: dict[str, Any]) -> SignedResolution:
        try:
            return SignedResolution.model_validate(body["decision"])
        except ValidationError as exc:
            raise UsageError(f"decision: not a signed resolution ({exc.error_count()} "
                             "error(s))") from None

    def signed_terms(self, record: DisputeRecord, agent: Agent,
                     body: dict[str, Any]) -> SignedResolution:
        """The partner's offer signed by us when its terms are these, else our own offer."""
        price = record.signed.agreement.terms.price
        to_seller = Credits.parse(body.get("to_seller"), "to_seller", allow_zero=True)
        penalty = Credits.parse(body.get("penalty", "0"), "penalty", allow_zero=True)
        if to_seller > price:
            raise UsageError(f"to_seller: at most the price, {price} credits")
        note = body.get("note") or ""
        if not isinstance(note, str) or len(note) > 200:
            raise UsageError("note: a text of at most 200 characters")
        offer = self.node.desk.resolutions.offers.get(record.signed.id)
        if offer is not None and (offer.resolution.to_seller, offer.resolution.penalty) == (
                to_seller, penalty):
            return offer.signed_by(agent.identity)
        resolution = Resolution(agreement_id=record.signed.id, to_seller=to_seller,
                                to_buyer=price - to_seller, penalty=penalty, note=note,
                                at_ms=self.node.runtime.clock.now_ms())
        return SignedResolution(resolution=resolution, signatures={}).signed_by(agent.identity)

    async def send(self, agent: Agent, partner: str, signed: SignedResolution) -> str:
        """Hand the partner the resolution; what it did, in a word."""
        try:
            reply = await self.node.runtime.context(agent).ask(
                partner, ResolutionNotice(resolution=signed.model_dump(mode="json")),
                timeout=5)
        except (AaexError, TimeoutError) as exc:
            logger.info("resolution not delivered to %s: %s", partner, exc)
            return f"unreachable: {exc}"
        if isinstance(reply, ResolutionTaken):
            return reply.outcome
        return f"refused: {getattr(reply, 'reason', type(reply).__name__)}"

