"""The warehouse's data under grants: who may use its sales history, for what, and the proof.

The sales history is the warehouse's; the planner only carries it to the forecasters. Before
the planner calls a forecaster, it asks the warehouse for a grant naming that forecaster
(`GrantRequest`): ``forecast.demand`` only, for this job's stores, for an hour, not to be
passed on. A grant names one grantee, so each forecaster gets its own, issued when the
market is about to ask it to bid (`seller_uses`, the ``use=`` of ``ctx.delegate``). The
forecaster's node checks the grant before it quotes and again before the work, records the
use in its audit log and sends the warehouse's node the entry with a signed head of that
log; a forecaster that reaches for the data for anything else (`ForecastProvider`'s
``also_train``) is refused by its own node, and the refusal is in both logs.

The report's ``sovereignty`` part (`report_part`) lists the grants, the entries each side
holds, and each forecast's provenance as the planner checked it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aaex_agents import Context, Identity, Message
from marketplace.cli.admin_client import must_run, reach, request
from marketplace.contracts.audit_log import AuditEntry
from marketplace.contracts.grant import Grant, SignedGrant
from marketplace.contracts.ledger import Ledger
from marketplace.node.config import load_config
from marketplace.trade.delegation import Delegated
from marketplace.trade.grants import DataUse, SellerUses, data_hash

FORECAST = "forecast.demand"
GRANT_WINDOW_MS = 3_600_000
"""How long a forecaster's grant covers a use: one hour from its issue."""
GRANTED_ACTION = "use"
"""What a forecaster may do with the history (ODRL ``use``: read and derive included)."""


class GrantRequest(Message, type="supply.grant_request/1"):
    """The planner asks the warehouse to grant `grantee` the history of `stores`."""

    grantee: str
    job: str
    stores: list[str]


class GrantIssued(Message, type="supply.grant_issued/1"):
    """The warehouse's signed grant (`SignedGrant.to_wire`)."""

    grant: bytes


class GrantRefused(Message, type="supply.grant_refused/1"):
    """The warehouse grants nothing; `reason` says why."""

    reason: str


def sales_history(demand: dict[str, list[float]], stores: Iterable[str]) -> dict[str, list[float]]:
    """The history of `stores` exactly as a forecast task carries it (what a grant hashes)."""
    return {s: [float(x) for x in demand[s]] for s in stores}


def issue_grant(owner: Identity, msg: GrantRequest, demand: dict[str, list[float]],
                now_ms: int) -> SignedGrant:
    """The owner's grant of `msg.stores`' history to `msg.grantee`, for forecasting only.

    Raises:
        KeyError: a store the owner has no history of.
        ValueError: the grantee is the owner, or not an address a grant can name.
    """
    history = sales_history(demand, msg.stores)
    return SignedGrant.issue(Grant(
        owner=owner.address, grantee=msg.grantee, dataset_id=f"sales/{msg.job}",
        dataset_hash=data_hash(history), actions=(GRANTED_ACTION,), purposes=(FORECAST,),
        not_before_ms=now_ms, not_after_ms=now_ms + GRANT_WINDOW_MS, transferable=False),
        owner)


def seller_uses(ctx: Context, warehouse: str, job: str, stores: list[str]) -> SellerUses:
    """For ``ctx.delegate(..., use=)``: each forecaster's grant, asked of the warehouse."""
    async def use_for(seller: str) -> DataUse | None:
        reply = await ctx.ask(warehouse, GrantRequest(grantee=seller, job=job, stores=stores),
                              timeout=10)
        if not isinstance(reply, GrantIssued):
            return None
        return DataUse(grant=reply.grant, action=GRANTED_ACTION, purpose=FORECAST,
                       field="history")
    return use_for


def provenance_document(done: Delegated) -> dict[str, Any] | None:
    """What the seller signed produced the forecast, and what the planner found wrong."""
    if done.provenance is None:
        return None
    record = done.provenance.provenance
    return {"agreement_id": record.agreement_id, "model": record.model.name,
            "model_hash": record.model.file_hash, "code_version": record.code_version,
            "inputs": [{"role": i.role, "hash": i.hash, "grant_id": i.grant_id}
                       for i in record.inputs],
            "problems": list(done.provenance_problems)}


async def await_both_logs(ledger: Ledger, owner: str, configs: dict[str, Path],
                          timeout: float) -> tuple[dict[str, dict[str, Any]],
                                                   list[tuple[str, int, AuditEntry, int]]]:
    """Wait until the owner's books hold, proven, every entry the providers logged about it.

    Each provider's log is read as its operator reads it (``GET /audit`` on its node). The
    providers' nodes send their entries as they record them (a killed node once it is
    back). Returns each provider's log and what the owner's books hold, complete or not at
    the timeout (`report_part` then names what is missing).
    """
    admins = {name: must_run(await reach(load_config(config)))
              for name, config in configs.items()}
    deadline = time.monotonic() + timeout
    while True:
        logs = {name: await request(access, "GET", "/audit", params={"limit": "1000"})
                for name, access in admins.items()}
        held = await ledger.audit_received(limit=1000)
        if not _unreported(logs, held, owner) or time.monotonic() >= deadline:
            return logs, held
        await asyncio.sleep(0.25)


def _unreported(logs: dict[str, dict[str, Any]], held: list[tuple[str, int, AuditEntry, int]],
                owner: str) -> list[str]:
    have = {(log, index) for log, index, _, _ in held}
    return [f"{name}'s entry {e['index']} ({e['event']}: {e['purpose']})"
            for name, log in logs.items() for e in log["entries"]
            if e["owner"] == owner and (log["node"], e["index"]) not in have]


def report_part(issued: list[SignedGrant], owner: str, forecasts: list[Delegated],
                logs: dict[str, dict[str, Any]], held: list[tuple[str, int, AuditEntry, int]],
                names: dict[str, str]) -> dict[str, Any]:
    """The report's ``sovereignty``: grants, both sides' audit entries, provenance, gaps."""
    nodes = {log["node"]: name for name, log in logs.items()}
    refused = [{"provider": name, **e} for name, log in logs.items() for e in log["entries"]
               if e["event"] == "refused" and e["owner"] == owner]
    problems = [f"not on the warehouse's books: {gap}" for gap in _unreported(logs, held, owner)]
    problems += [f"{name}'s audit log: {log['problem']}" for name, log in logs.items()
                 if log["problem"]]
    granted = {g.id for g in issued}
    for done in forecasts:
        bound = done.agreement.agreement.terms.grant
        if bound is None or bound.grant_id not in granted:
            problems.append(f"forecast {done.agreement.id[:12]} was not bought under a grant "
                            "the warehouse issued")
        problems += [f"provenance of {done.agreement.id[:12]}: {p}"
                     for p in done.provenance_problems]
    return {
        "grants": [{"grantee": names.get(g.grant.grantee, g.grant.grantee),
                    "grant_id": g.id, "dataset": g.grant.dataset_id,
                    "dataset_hash": g.grant.dataset_hash, "actions": list(g.grant.actions),
                    "purposes": list(g.grant.purposes), "not_before_ms": g.grant.not_before_ms,
                    "not_after_ms": g.grant.not_after_ms,
                    "transferable": g.grant.transferable} for g in issued],
        "provider_entries": {name: [e for e in log["entries"] if e["owner"] == owner]
                             for name, log in logs.items()},
        "warehouse_entries": [{"provider": nodes.get(log, log), "index": index,
                               "head_size": size, **entry.model_dump()}
                              for log, index, entry, size in held],
        "refused": refused,
        "provenance": [p for p in (provenance_document(d) for d in forecasts)
                       if p is not None],
        "problems": problems}
