"""The admin API's audit routes: the node's Merkle log of data uses, its proofs, its partners.

    GET  /audit[?limit=N]                     size, root, signed head, recent entries, the
                                              entries partners proved about our agents
    GET  /audit/prove?index=N[&size=M]        entry N and its inclusion proof (RFC 9162)
    GET  /audit/consistency?first=A[&second=B]   the consistency proof from size A to B
    GET  /audit/partners                      every partner log we hold a head of: caught or
                                              ok, with the evidence of the caught ones
    POST /audit                               record a use: {"agent", "dataset", "purpose",
                                              "owner", "event", "content_hash", "grant",
                                              "agreement_id"} (token)

Proofs are against the node's current signed head unless `size` or `second` name an earlier
size; a proof from this API checks without trusting it (``aaex audit prove`` does).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from aaex_agents.errors import UsageError
from aaex_agents.transport.bodies import read_json

from ..contracts.audit_log import AuditEntry, AuditEvidence
from ..contracts.audit_store import PartnerLog
from .accounts import check_address, resolve_agent
from .admin_writes import MAX_BODY_BYTES, OperatorView
from .responses import json_response, query_int

MAX_AUDIT_LIMIT = 1000
"""Most entries one ``/audit`` answer lists."""
_FIELDS = ("dataset", "purpose", "owner", "event", "content_hash", "grant", "agreement_id")


def entry_document(index: int, entry: AuditEntry) -> dict[str, Any]:
    """One entry of an audit log, as the admin API and the CLI show it."""
    return {"index": index, **entry.model_dump()}


def partner_document(kept: PartnerLog, evidence: list[AuditEvidence]) -> dict[str, Any]:
    """What we hold of one partner's log, and the evidence when it was caught."""
    return {"log": kept.head.log, "size": kept.head.size, "root": kept.head.root,
            "signed_at_ms": kept.head.at_ms, "status": kept.status, "detail": kept.detail,
            "checked_ms": kept.checked_ms, "sender": kept.sender,
            "evidence": [e.model_dump(mode="json") for e in evidence]}


def add_audit_routes(app: web.Application, node: OperatorView, guarded: Any) -> None:
    """Add the audit routes; `guarded(view, write=...)` applies the token and the errors."""
    routes = _AuditRoutes(node)
    app.router.add_get("/audit", guarded(routes.log, write=False))
    app.router.add_get("/audit/prove", guarded(routes.prove, write=False))
    app.router.add_get("/audit/consistency", guarded(routes.consistency, write=False))
    app.router.add_get("/audit/partners", guarded(routes.partners, write=False))
    app.router.add_post("/audit", guarded(routes.record, write=True))


class _AuditRoutes:
    def __init__(self, node: OperatorView) -> None:
        self.node = node

    async def log(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        limit = query_int(request, "limit", 50, 1, MAX_AUDIT_LIMIT)
        head = await ledger.audit_head()
        entries = await ledger.audit_entries(after=max(0, head.size - limit), limit=limit)
        received = await ledger.audit_received(limit=limit)
        return json_response({
            "node": self.node.identity.address, "size": head.size, "root": head.root,
            "head": head.model_dump(), "problem": await ledger.audit_verify_own(),
            "entries": [entry_document(i, e) for i, e in reversed(entries)],
            "received": [{"log": log, "head_size": size, **entry_document(i, e)}
                         for log, i, e, size in received]})

    async def prove(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        head = await ledger.audit_head()
        size = query_int(request, "size", head.size, 1, head.size)
        index = query_int(request, "index", -1, 0, max(0, size - 1))
        if index < 0:
            raise UsageError("index: give the entry to prove, e.g. ?index=0")
        entry, proof = await ledger.audit_inclusion(index, size)
        return json_response({
            "index": index, "size": size, "root": (await ledger.audit_root(size)).hex(),
            "leaf_hash": entry.leaf_hash().hex(), "entry": entry_document(index, entry),
            "proof": [p.hex() for p in proof],
            "head": head.model_dump() if size == head.size else None})

    async def consistency(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        head = await ledger.audit_head()
        second = query_int(request, "second", head.size, 1, max(1, head.size))
        first = query_int(request, "first", -1, 1, max(1, second))
        if first < 0:
            raise UsageError("first: give the earlier size, e.g. ?first=1")
        proof = await ledger.audit_consistency(first, second)
        return json_response({
            "first": first, "second": second,
            "first_root": (await ledger.audit_root(first)).hex(),
            "second_root": (await ledger.audit_root(second)).hex(),
            "proof": [p.hex() for p in proof],
            "head": head.model_dump() if second == head.size else None})

    async def partners(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        return json_response([partner_document(kept, await ledger.audit_evidence(kept.head.log)
                                               if kept.status != "ok" else [])
                              for kept in await ledger.audit_partners()])

    async def record(self, request: web.Request) -> web.Response:
        body = await read_json(request, limit=MAX_BODY_BYTES)
        if not isinstance(body, dict):
            raise UsageError("body: send {\"agent\": ..., \"dataset\": ..., \"purpose\": ...}")
        hosted = {a.name: a.address for a in self.node.runtime.agents.values()}
        _, address = resolve_agent(hosted, body.get("agent"))
        unknown = set(body) - {"agent", *_FIELDS}
        if unknown:
            raise UsageError(f"{sorted(unknown)[0]}: not a field of an audit entry; give "
                             f"{', '.join(_FIELDS)}")
        text = {field: body.get(field, "") for field in _FIELDS}
        for field, value in text.items():
            if not isinstance(value, str):
                raise UsageError(f"{field}: give a text, got {value!r}")
        for field in ("dataset", "purpose"):
            if not text[field]:
                raise UsageError(f"{field}: required (what data, and what it was used for)")
        if text["owner"]:
            check_address(text["owner"], "owner")
        try:
            await self.node.ledger.record_access(
                address, text["dataset"], text["purpose"], owner=text["owner"],
                event=text["event"] or "used", content_hash=text["content_hash"],
                grant=text["grant"], agreement_id=text["agreement_id"] or None)
        except UsageError as exc:  # its message names the field after the function
            raise UsageError(str(exc).removeprefix("record_access: ")) from None
        head = await self.node.ledger.audit_head()
        return json_response({"index": head.size - 1, "size": head.size, "root": head.root})
