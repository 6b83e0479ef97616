"""The admin API's operator routes: money in and out, accounts, statements, buying.

    POST /account/deposit   {"agent": NAME|ADDRESS, "amount": CREDITS[, "memo": TEXT]}
    POST /account/withdraw  {"agent": NAME|ADDRESS, "amount": CREDITS[, "memo": TEXT]}
    GET  /accounts                        per hosted agent: available, held, receivable, payable
    GET  /statement?with=ADDRESS[&agent=NAME]   our agreements with a partner and their net
    POST /reconcile         {"with": ADDRESS[, "agent": NAME]}   ask the partner, compare
    POST /market/buy        {"agent", "capability", "task", "budget", "deadline"[, "where"]}

Routes that change something (every POST) require ``Authorization: Bearer <token>``, the
token the node wrote to ``data_dir/admin.token`` at start (see `accounts`); without it they
answer 401. Reads stay open, like the rest of the admin API, which listens on loopback.
Bad input is a 400 whose one-line ``error`` names the field; it never reaches the books.

`/market/buy` answers as it goes: one JSON object per line (NDJSON, chunked), each with an
``event`` (``sellers``, ``offers``, ``agreement``, ``delivery``, ``receipt``, ``settled``),
and last ``done`` (the result) or ``failed`` (the reason and every attempt's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aaex_agents import Agent
from aaex_agents.errors import AaexError, UsageError
from aaex_agents.money import Credits
from discovery.query import parse_where

from ..contracts.books import Position
from ..contracts.errors import InsufficientFunds, LedgerError
from ..trade.delegation import Delegated
from ..trade.errors import DelegationFailed
from ..trade.statements import reconcile, statement_between
from .accounts import (
    account_document,
    accounts_document,
    check_address,
    reconciliation_document,
    resolve_agent,
    statement_document,
)

if TYPE_CHECKING:
    from .node import Node

logger = logging.getLogger(__name__)

_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_DEADLINE_S = 7 * 24 * 3600.0
RECONCILE_TIMEOUT_S = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(document, default=str, indent=1), status=status,
                        content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    response = _json({"error": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aaex-admin"'
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    """The JSON object a POST carries.

    Raises:
        UsageError: no body, not JSON, or not an object.
    """
    try:
        body = json.loads(await request.text() or "null")
    except ValueError as exc:
        raise UsageError(f"body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise UsageError("body: send a JSON object, e.g. {\"agent\": ..., \"amount\": ...}")
    return body


def _seconds(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UsageError(f"{field}: give a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{field}: {value!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_DEADLINE_S:
        raise UsageError(f"{field}: must be more than 0 and at most {MAX_DEADLINE_S:.0f} "
                         f"seconds, got {value!r}")
    return seconds


def _text(body: dict[str, Any], field: str, *, limit: int = 200) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise UsageError(f"{field}: give a text of at most {limit} characters")
    return value


def add_operator_routes(app: web.Application, node: Node, token: str) -> None:
    """Add the operator routes of `node` to its admin `app`; POSTs require `token`."""
    expected = f"Bearer {token}".encode()

    def authorized(request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected)

    def hosted() -> dict[str, str]:
        return {agent.name: agent.address for agent in node.runtime.agents.values()}

    def agent_of(value: object, field: str = "agent") -> Agent:
        _, address = resolve_agent(hosted(), value, field=field)
        return node.runtime.agents[address]

    def guarded(view: Handler, *, write: bool) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            if write and not authorized(request):
                return _error(401, "missing or wrong admin token: send 'Authorization: "
                                   "Bearer <token>' with the token in data_dir/admin.token")
            try:
                return await view(request)
            except UsageError as exc:
                return _error(400, str(exc))
            except InsufficientFunds as exc:
                return _error(409, str(exc))
            except LedgerError as exc:
                logger.error("admin %s: the books failed", request.path, exc_info=True)
                return _error(503, f"the books are unavailable: {exc}")
        return run

    async def accounts(request: web.Request) -> web.Response:
        return _json(accounts_document(hosted(), await node.ledger.positions()))

    async def statement(request: web.Request) -> web.Response:
        partner = check_address(request.query.get("with"), "with")
        if "agent" in request.query:
            agent = agent_of(request.query["agent"])
            found = statement_between(await node.ledger.lines(), agent.address, partner)
        else:
            found = await node.ledger.statement(partner)
        return _json({"node": node.identity.address, **statement_document(found)})

    async def move(request: web.Request, kind: str) -> web.Response:
        body = await _body(request)
        agent = agent_of(body.get("agent"))
        amount = Credits.parse(body.get("amount"), "amount")
        memo = _text(body, "memo") or f"{kind} through the admin API"
        write = node.ledger.deposit if kind == "deposit" else node.ledger.withdraw
        entry = await write(agent.address, amount, memo=memo)
        position = (await node.ledger.positions()).get(agent.address, Position())
        logger.info("%s of %s credits for %s (entry %d)", kind, amount,
                    agent.name, entry.seq)
        return _json({kind: True, "entry": entry.seq, **amount.document("amount"),
                      "account": account_document(agent.name, agent.address, position)})

    async def deposit(request: web.Request) -> web.Response:
        return await move(request, "deposit")

    async def withdraw(request: web.Request) -> web.Response:
        return await move(request, "withdraw")

    async def reconcile_view(request: web.Request) -> web.Response:
        body = await _body(request)
        partner = check_address(body.get("with"), "with")
        agents = ([agent_of(body["agent"])] if body.get("agent") is not None else
                  [a for a in node.runtime.agents.values() if a.address != partner])
        found = await asyncio.gather(*(
            reconcile(node.runtime.context(agent), node.ledger, partner,
                      timeout=RECONCILE_TIMEOUT_S) for agent in agents))
        documents = [reconciliation_document(agent.name, one)
                     for agent, one in zip(agents, found, strict=True)]
        gaps = [f"{d['agent']}: {gap}" for d in documents for gap in d["differences"]]
        return _json({"with": partner, "agreed": not gaps, "differences": gaps,
                      "agents": documents})

    async def buy(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        agent = agent_of(body.get("agent"))
        capability = body.get("capability")
        if not isinstance(capability, str) or not _CAPABILITY.match(capability):
            raise UsageError(f"capability: write a capability such as forecast.demand, got "
                             f"{capability!r}")
        task = body.get("task", {})
        if not isinstance(task, dict):
            raise UsageError("task: give the task as a JSON object")
        budget = Credits.parse(body.get("budget"), "budget")
        deadline = _seconds(body.get("deadline"), "deadline")
        where = _text(body, "where", limit=1000)
        if where is not None:
            try:
                parse_where(where)
            except UsageError as exc:
                raise UsageError(f"where: {exc}") from None
        if node.market is None:
            raise UsageError("this node has no market service")
        delegator = node.market.for_agent(agent.address)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def run() -> None:
            try:
                done = await delegator.delegate(
                    node.runtime.context(agent), capability, task,
                    budget=budget, deadline=deadline, where=where,
                    progress=lambda event, details: events.put_nowait(
                        {"event": event, **details}))
                events.put_nowait(_done(done))
            except DelegationFailed as exc:
                events.put_nowait({"event": "failed", "reason": str(exc), "attempts": [
                    {"seller": a.seller, "verdict": a.verdict, "detail": a.detail}
                    for a in exc.attempts]})
            except (AaexError, TimeoutError) as exc:
                events.put_nowait({"event": "failed", "reason": f"{type(exc).__name__}: {exc}",
                                   "attempts": []})
            except Exception as exc:  # the operator still gets a last line; logged in full
                logger.error("buying %s for %s failed", capability, agent.name, exc_info=True)
                events.put_nowait({"event": "failed", "reason": f"{type(exc).__name__}: {exc}",
                                   "attempts": []})
            finally:
                events.put_nowait(None)

        buying = asyncio.create_task(run(), name=f"admin.buy.{agent.name}")
        try:
            await _stream(response, events)
            await buying
        finally:
            if not buying.done():  # the server is stopping; recovery resumes the purchase
                buying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await buying
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    for path, view, write in (
            ("/accounts", accounts, False), ("/statement", statement, False),
            ("/account/deposit", deposit, True), ("/account/withdraw", withdraw, True),
            ("/reconcile", reconcile_view, True), ("/market/buy", buy, True)):
        (app.router.add_post if write else app.router.add_get)(
            path, guarded(view, write=write))


async def _stream(response: web.StreamResponse,
                  events: asyncio.Queue[dict[str, Any] | None]) -> None:
    """Write each event as a line until the last; a client that left only stops the writing."""
    listening = True
    while (event := await events.get()) is not None:
        if not listening:
            continue
        try:
            await response.write((json.dumps(event, default=str) + "\n").encode())
        except ConnectionError:
            logger.info("the buyer's terminal left; the purchase goes on")
            listening = False


def _done(done: Delegated) -> dict[str, Any]:
    terms = done.agreement.agreement.terms
    return {"event": "done", "result": done.result, "agreement_id": done.agreement_id,
            "seller": done.seller, **terms.price.document("price"),
            **done.receipt.receipt.release.document("paid"),
            **done.receipt.receipt.refund.document("refunded"),
            "receipt_id": done.receipt.id, "verdict": done.receipt.receipt.verdict,
            "attempts": [{"seller": a.seller, "verdict": a.verdict, "detail": a.detail,
                          "agreement_id": a.agreement_id} for a in done.attempts]}
