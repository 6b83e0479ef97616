"""The admin API's operator routes: money in and out, accounts, statements, buying.

    POST /account/deposit   {"agent": NAME|ADDRESS, "amount": CREDITS[, "memo": TEXT]}
    POST /account/withdraw  {"agent": NAME|ADDRESS, "amount": CREDITS[, "memo": TEXT]}
    GET  /accounts                        per hosted agent: available, held, receivable, payable
    GET  /statement?with=ADDRESS[&agent=NAME]   our agreements with a partner and their net
    POST /reconcile         {"with": ADDRESS[, "agent": NAME]}   ask the partner, compare;
                            also lists payments one side signed so far ("pending")
    POST /market/buy        {"agent", "capability", "task", "budget", "deadline"[, "where"]
                             [, "use": {"grant", "action", "purpose"[, "field"]}]}
    POST /grants/revoke     {"agent": NAME, "revocation": {...}}   send an owner's signed
                            revocation to the grantee it names (through the agent)

Routes that change something (every POST) require ``Authorization: Bearer <token>``, the
token the node wrote to ``data_dir/admin.token`` at start (see `accounts`); without it they
answer 401. Reads stay open, like the rest of the admin API, which listens on loopback.
Bad input is a 400 whose one-line ``error`` names the field; it never reaches the books.

`/market/buy` answers as it goes: one JSON object per line (NDJSON, chunked), each with an
``event`` (``sellers``, ``offers``, ``agreement``, ``delivery``, ``receipt``, ``settled``),
and last ``done`` (the result) or ``failed`` (the reason and every attempt's). Both last
events list ``declined``: every seller that declined during the purchase, with its reason and
detail. A decline is an answer, not a failure: that seller is not asked again in the same
purchase, and not banned (a seller that did not answer usably is, and is not listed there).
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from aaex_agents import Agent
from aaex_agents.errors import AaexError, BadRequestBody, UsageError
from aaex_agents.money import Credits
from aaex_agents.transport.bodies import read_json
from discovery.query import parse_where

from ..contracts.books import Position
from ..contracts.errors import InsufficientFunds, LedgerError
from ..contracts.grant import SignedRevocation
from ..trade.delegation import FAILED, Delegated, Delegator
from ..trade.errors import DelegationFailed
from ..trade.grants import DataUse, GrantRevoked, RevocationTaken, use_from_document
from ..trade.negotiation import Decline
from ..trade.statements import reconcile, statement_between
from .accounts import (
    account_document,
    accounts_document,
    check_address,
    pending_documents,
    reconciliation_document,
    resolve_agent,
    statement_document,
)
from .responses import json_response

if TYPE_CHECKING:
    from aaex_agents.identity import Identity
    from aaex_agents.runtime import Runtime

    from ..contracts.ledger import Ledger
    from ..trade.market import NodeMarket

logger = logging.getLogger(__name__)

_CAPABILITY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_DEADLINE_S = 7 * 24 * 3600.0
RECONCILE_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 1 << 20
"""Largest body an operator's POST may carry (1 MiB)."""
REVOKE_TIMEOUT_S = 10.0
"""Seconds the grantee's node gets to take a revocation sent through ``/grants/revoke``."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]



def _error(status: int, message: str) -> web.Response:
    response = json_response({"error": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="aaex-admin"'
    return response


async def json_body(request: web.Request) -> dict[str, Any]:
    """The JSON object a POST carries, read as every HTTP surface reads one (`read_json`).

    Raises:
        UsageError: no body, not JSON, nested too deep, or not an object.
        BadRequestBody: over `MAX_BODY_BYTES` (the guard answers its status, 413).
    """
    try:
        body = await read_json(request, limit=MAX_BODY_BYTES)
    except BadRequestBody as exc:
        if exc.status != 400:
            raise
        raise UsageError(f"body: {exc}") from None
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


class OperatorView(Protocol):
    """What the operator routes need of a node: its books, its agents, its market."""

    @property
    def identity(self) -> Identity:
        """The node's own key: statements name its address."""

    @property
    def ledger(self) -> Ledger:
        """The node's books."""

    @property
    def runtime(self) -> Runtime:
        """The runtime hosting the node's agents."""

    @property
    def market(self) -> NodeMarket:
        """Where the hosted agents buy."""


def add_operator_routes(app: web.Application, node: OperatorView,
                        token: str) -> Callable[..., Handler]:
    """Add the operator routes of `node` to its admin `app`; POSTs require `token`.

    Returns the guard (token and error handling) for further routes: ``guard(view, write=)``.
    """
    routes = _OperatorRoutes(node, token)
    for path, view, write in (
            ("/accounts", routes.accounts, False), ("/statement", routes.statement, False),
            ("/account/deposit", routes.deposit, True),
            ("/account/withdraw", routes.withdraw, True),
            ("/reconcile", routes.reconcile, True), ("/market/buy", routes.buy, True),
            ("/grants/revoke", routes.revoke_grant, True)):
        (app.router.add_post if write else app.router.add_get)(
            path, routes.guarded(view, write=write))
    return routes.guarded


@dataclass(frozen=True)
class _Order:
    """A purchase the operator asked for, read from the body of ``/market/buy``."""

    agent: Agent
    capability: str
    task: dict[str, Any]
    budget: Credits
    deadline: float
    where: str | None
    use: DataUse | None = None


class _OperatorRoutes:
    """The views of `add_operator_routes` over `node`."""

    def __init__(self, node: OperatorView, token: str) -> None:
        self.node = node
        self.expected = f"Bearer {token}".encode()

    def authorized(self, request: web.Request) -> bool:
        return hmac.compare_digest(request.headers.get("Authorization", "").encode(),
                                   self.expected)

    def hosted(self) -> dict[str, str]:
        return {agent.name: agent.address for agent in self.node.runtime.agents.values()}

    def agent_of(self, value: object, field: str = "agent") -> Agent:
        _, address = resolve_agent(self.hosted(), value, field=field)
        return self.node.runtime.agents[address]

    def guarded(self, view: Handler, *, write: bool) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            if write and not self.authorized(request):
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

    async def accounts(self, request: web.Request) -> web.Response:
        return json_response(accounts_document(self.hosted(), await self.node.ledger.positions()))

    async def statement(self, request: web.Request) -> web.Response:
        ledger = self.node.ledger
        partner = check_address(request.query.get("with"), "with")
        if "agent" in request.query:
            agent = self.agent_of(request.query["agent"])
            found = statement_between(await ledger.lines(), agent.address, partner)
        else:
            found = await ledger.statement(partner)
        return json_response({"node": self.node.identity.address, **statement_document(found)})

    async def move(self, request: web.Request, kind: str) -> web.Response:
        ledger = self.node.ledger
        body = await json_body(request)
        agent = self.agent_of(body.get("agent"))
        amount = Credits.parse(body.get("amount"), "amount")
        memo = _text(body, "memo") or f"{kind} through the admin API"
        write = ledger.deposit if kind == "deposit" else ledger.withdraw
        entry = await write(agent.address, amount, memo=memo)
        position = (await ledger.positions()).get(agent.address, Position())
        logger.info("%s of %s credits for %s (entry %d)", kind, amount,
                    agent.name, entry.seq)
        return json_response({kind: True, "entry": entry.seq, **amount.document("amount"),
                      "account": account_document(agent.name, agent.address, position)})

    async def deposit(self, request: web.Request) -> web.Response:
        return await self.move(request, "deposit")

    async def withdraw(self, request: web.Request) -> web.Response:
        return await self.move(request, "withdraw")

    async def reconcile(self, request: web.Request) -> web.Response:
        runtime = self.node.runtime
        body = await json_body(request)
        partner = check_address(body.get("with"), "with")
        agents = ([self.agent_of(body["agent"])] if body.get("agent") is not None else
                  [a for a in runtime.agents.values() if a.address != partner])
        found = await asyncio.gather(*(
            reconcile(runtime.context(agent), self.node.ledger, partner,
                      timeout=RECONCILE_TIMEOUT_S) for agent in agents))
        desk = getattr(self.node, "desk", None)  # a node's market desk keeps pending payments
        documents = [{**reconciliation_document(agent.name, one), "pending": (
                         [] if desk is None else
                         pending_documents(desk.payments, agent.address, partner))}
                     for agent, one in zip(agents, found, strict=True)]
        gaps = [f"{d['agent']}: {gap}" for d in documents for gap in d["differences"]]
        return json_response({"with": partner, "agreed": not gaps, "differences": gaps,
                      "agents": documents})

    async def revoke_grant(self, request: web.Request) -> web.Response:
        """Send an owner's signed revocation to the grantee's node, as one of our agents."""
        body = await json_body(request)
        agent = self.agent_of(body.get("agent"))
        try:
            revocation = SignedRevocation.model_validate(body.get("revocation"))
            revocation.verify()
        except (ValueError, AaexError) as exc:
            raise UsageError(f"revocation: {str(exc).splitlines()[0]}") from None
        grantee = check_address(body.get("to"), "to")
        try:
            reply = await self.node.runtime.context(agent).ask(
                grantee, GrantRevoked(revocation=revocation), timeout=REVOKE_TIMEOUT_S)
        except (AaexError, TimeoutError) as exc:
            return _error(502, f"the grantee's node did not take the revocation: {exc}")
        if isinstance(reply, RevocationTaken):
            return json_response({"revoked": True, "grant_id": reply.grant_id, "to": grantee})
        detail = f"{reply.reason}: {reply.detail}" if isinstance(reply, Decline) else \
            type(reply).__name__
        return _error(502, f"the grantee's node refused the revocation: {detail}")

    def order(self, body: dict[str, Any]) -> _Order:
        """The purchase `body` asks for.

        Raises:
            UsageError: a field is missing or wrong; the message names it.
        """
        agent = self.agent_of(body.get("agent"))
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
        use = None if body.get("use") is None else use_from_document(body["use"])
        return _Order(agent, capability, task, budget, deadline, where, use)

    async def buy(self, request: web.Request) -> web.StreamResponse:
        order = self.order(await json_body(request))
        delegator = self.node.market.for_agent(order.agent.address)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        buying = asyncio.create_task(self.purchase(order, delegator, events),
                                     name=f"admin.buy.{order.agent.name}")
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

    async def purchase(self, order: _Order, delegator: Delegator,
                       events: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Buy what `order` asks for, putting each step on `events`, and None last."""
        declined: dict[str, dict[str, str]] = {}

        def progress(event: str, details: dict[str, Any]) -> None:
            if event == "offers":
                for offer in details["offers"]:
                    reason = offer.get("declined")
                    if reason is not None and not reason.startswith(FAILED):
                        declined[offer["seller"]] = {"seller": offer["seller"],
                                                     "reason": reason,
                                                     "detail": offer.get("detail", "")}
            events.put_nowait({"event": event, **details})

        last: dict[str, Any] | None = None  # stays None when cancelled: nobody reads on
        try:
            done = await delegator.delegate(
                self.node.runtime.context(order.agent), order.capability, order.task,
                budget=order.budget, deadline=order.deadline, where=order.where,
                progress=progress, use=order.use)
            last = _done(done)
        except DelegationFailed as exc:
            last = {"event": "failed", "reason": str(exc), "attempts": [
                {"seller": a.seller, "verdict": a.verdict, "detail": a.detail}
                for a in exc.attempts]}
        except (AaexError, TimeoutError) as exc:
            last = {"event": "failed", "reason": f"{type(exc).__name__}: {exc}",
                    "attempts": []}
        except Exception as exc:  # the operator still gets a last line; logged in full
            logger.error("buying %s for %s failed", order.capability, order.agent.name,
                         exc_info=True)
            last = {"event": "failed", "reason": f"{type(exc).__name__}: {exc}",
                    "attempts": []}
        finally:
            if last is not None:
                events.put_nowait({**last, "declined": list(declined.values())})
            events.put_nowait(None)


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
            "provenance": None if done.provenance is None else done.provenance.model_dump(),
            "provenance_problems": done.provenance_problems,
            "attempts": [{"seller": a.seller, "verdict": a.verdict, "detail": a.detail,
                          "agreement_id": a.agreement_id} for a in done.attempts]}
