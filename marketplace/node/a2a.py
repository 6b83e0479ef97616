"""A2A 1.0 for the node's agents: agent cards and JSON-RPC ``SendMessage``, served by hand.

    GET  /.well-known/agent-card.json                  the node's first agent
    GET  /a2a/<aaex1 address>/.well-known/agent-card.json
    POST /a2a/<aaex1 address>                          JSON-RPC 2.0

A card has one skill per capability the agent sells, with its price and SLA in words, and
the agent's signed address binding (``aaex1`` <-> ``agent1``) as an extension. SendMessage
takes a text part to the agent's chat handler (an agent without one says what it sells) and
answers with a message; a data part shaped as a call for proposals goes to the agent's
seller logic and is answered with a task: completed, with the quote as a data artifact, or
rejected, with the decline reason. An A2A caller holds no key, so it can ask and get quotes
but cannot sign an agreement: the quote's dialogue is withdrawn once answered, and nothing of
it is kept. Its dialogue id is this server's choice, and it is the dialogue of the sender
``a2a:<caller's address>``: a seller keys dialogues by (sender, id), so an A2A call can never
name, see or end a signed buyer's negotiation, and while it runs it counts against that
sender's quota (`marketplace.trade.dialogues`). Every other method
gets its A2A error. The wire form is A2A's proto-JSON (camelCase, enum names).

A body is read as every HTTP surface of the node reads one (`read_json`): at most
`MAX_BODY_BYTES`, nested at most 201 levels deep (`MAX_JSON_DEPTH`). A body that is not JSON, or is
nested deeper, gets JSON-RPC's parse error (-32700) naming the cause; one over the limit an
invalid request (-32600). As JSON-RPC errors, they travel with HTTP 200, as a2a-sdk's own
server answers them, so A2A clients read the reason.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from aaex_agents import Agent
from aaex_agents.errors import BadRequestBody, UsageError
from aaex_agents.interop import AddressBinding, ChatMessage, InteropMetrics
from aaex_agents.interop.base import handler_for
from aaex_agents.model import ErrorReply
from aaex_agents.money import Credits
from aaex_agents.runtime import Runtime
from aaex_agents.transport.bodies import read_json
from discovery.records import PriceModel, SlaOffer

from ..trade.negotiation import CallForProposals, Decline, Propose, Seller

logger = logging.getLogger(__name__)

PROTOCOL = "a2a"
A2A_VERSION = "1.0"
BINDING_EXTENSION = "urn:aaex:extension:uagents-address-binding:1"
CARD_PATH = "/.well-known/agent-card.json"
QUOTE_WINDOW_S = 30.0
"""How long a quote asked without `respond_by` is valid."""
MAX_BODY_BYTES = 1 << 20
"""Largest JSON-RPC request read (1 MiB)."""

# JSON-RPC and A2A error codes, and the reason each is counted under in metrics.
PARSE_ERROR = (-32700, "parse_error")
INVALID_REQUEST = (-32600, "invalid_request")
METHOD_NOT_FOUND = (-32601, "method_not_found")
INVALID_PARAMS = (-32602, "invalid_params")
TASK_NOT_FOUND = (-32001, "task_not_found")
UNSUPPORTED_OPERATION = (-32004, "unsupported_operation")
CONTENT_TYPE_NOT_SUPPORTED = (-32005, "content_type_not_supported")
VERSION_NOT_SUPPORTED = (-32009, "version_not_supported")

# Methods A2A 1.0 defines that this server does not serve. Answers are final (nothing is
# kept), so the task methods answer TaskNotFound; the others UnsupportedOperation.
_TASK_METHODS = frozenset({"GetTask", "CancelTask", "SubscribeToTask"})
_UNSUPPORTED = frozenset({"SendStreamingMessage", "ListTasks",
                          "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig",
                          "ListTaskPushNotificationConfigs", "DeleteTaskPushNotificationConfig",
                          "GetExtendedAgentCard"})


class OfferLike(Protocol):
    """What a card reads of an offer (`discovery.advertiser.Listing`, which imports libp2p)."""

    @property
    def capability(self) -> str:
        """The capability sold."""

    @property
    def price(self) -> PriceModel:
        """How it is charged."""

    @property
    def sla(self) -> SlaOffer:
        """What is promised."""


Offers = Callable[[Agent], Sequence[OfferLike]]


class RpcError(UsageError):
    """An error answered to the JSON-RPC caller; `code` and `reason` from the table above.

    The caller misused the A2A API (a UsageError of theirs); it never leaves the listener.
    """

    def __init__(self, error: tuple[int, str], message: str) -> None:
        self.code, self.reason = error
        super().__init__(message)


def offer_text(offer: OfferLike) -> str:
    """One offer in words: price, then SLA."""
    per = {"fixed": "per task", "per_unit": "per unit",
           "per_1k_tokens": "per 1,000 output tokens"}.get(offer.price.kind, offer.price.kind)
    return (f"{offer.capability} at {offer.price.amount} {offer.price.currency} {per}; "
            f"p50 {offer.sla.p50_ms:g} ms, p95 {offer.sla.p95_ms:g} ms, delivery within "
            f"{offer.sla.deadline_s:g} s, availability {offer.sla.availability:.0%}")


def describe(agent: Agent, offers: Sequence[OfferLike]) -> str:
    """What an agent without a chat handler answers: what it sells and how to buy."""
    if not offers:
        return f"{agent.name} sells nothing; it answers typed AAEX messages at {agent.address}."
    sold = "; ".join(offer_text(o) for o in offers)
    return (f"{agent.name} sells {sold}. Ask for a quote with a call for proposals; to buy, "
            f"negotiate as an AAEX agent with {agent.address}.")


def agent_card(agent: Agent, *, base_url: str, offers: Sequence[OfferLike],
               binding: AddressBinding | None, version: str) -> dict[str, Any]:
    """The A2A 1.0 card of `agent` (proto-JSON), reachable under `base_url`."""
    chats = handler_for(agent, ChatMessage) is not None
    skills = [{
        "id": offer.capability, "name": offer.capability,
        "description": (f"Sells {offer_text(offer)}. Send a data part shaped as a call for "
                        "proposals (capability, task, max_price, max_latency_ms, "
                        "max_deadline_s) for a quote."),
        "tags": [offer.capability.split(".")[0], "aaex", "quote"],
        "examples": [json.dumps({"capability": offer.capability, "task": {},
                                 "max_price": str(offer.price.amount * 2),
                                 "max_latency_ms": offer.sla.p95_ms * 2,
                                 "max_deadline_s": offer.sla.deadline_s})],
        "inputModes": ["application/json"], "outputModes": ["application/json"],
    } for offer in offers]
    skills.append({
        "id": "chat", "name": "chat",
        "description": ("Talk in text." if chats else
                        "Ask in text what this agent sells; it answers with its offers."),
        "tags": ["chat"], "examples": ["What do you sell?"],
        "inputModes": ["text/plain"], "outputModes": ["text/plain"]})
    extensions = []
    if binding is not None:
        extensions.append({
            "uri": BINDING_EXTENSION, "required": False,
            "description": ("The agent's AAEX (Ed25519) and uAgents (secp256k1) addresses, "
                            "bound by a statement both keys signed."),
            "params": binding.model_dump(mode="json")})
    return {
        "name": agent.name,
        "description": describe(agent, offers),
        "version": version,
        "supportedInterfaces": [{"url": f"{base_url}/a2a/{agent.address}",
                                 "protocolBinding": "JSONRPC",
                                 "protocolVersion": A2A_VERSION}],
        "provider": {"organization": "AAEX node", "url": base_url},
        "capabilities": {"streaming": False, "pushNotifications": False,
                         "extensions": extensions, "extendedAgentCard": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": skills,
    }


class A2AService:
    """Serves the cards and SendMessage of a runtime's agents."""

    def __init__(self, runtime: Runtime, *, base_url: str, offers: Offers,
                 metrics: InteropMetrics, bindings: Mapping[str, AddressBinding],
                 version: str = "0.1.0") -> None:
        self._runtime = runtime
        self.base_url = base_url.rstrip("/")
        self._offers = offers
        self._metrics = metrics
        self._bindings = bindings
        self._version = version

    def card_of(self, agent: Agent) -> dict[str, Any]:
        """The card of a hosted agent."""
        return agent_card(agent, base_url=self.base_url, offers=self._offers(agent),
                          binding=self._bindings.get(agent.address), version=self._version)

    def add_routes(self, app: web.Application) -> None:
        """Add the card and JSON-RPC routes to `app`."""
        app.router.add_get(CARD_PATH, self._first_card)
        app.router.add_get("/a2a/{address}" + CARD_PATH, self._card)
        app.router.add_post("/a2a/{address}", self._rpc)

    def _agent(self, request: web.Request) -> Agent:
        agent = self._runtime.agents.get(request.match_info["address"])
        if agent is None:
            raise web.HTTPNotFound(text=json.dumps({"error": "no such agent on this node"}),
                                   content_type="application/json")
        return agent

    async def _first_card(self, request: web.Request) -> web.Response:
        agents = list(self._runtime.agents.values())
        if not agents:
            raise web.HTTPNotFound(text='{"error": "this node hosts no agent"}',
                                   content_type="application/json")
        return web.json_response(self.card_of(agents[0]))

    async def _card(self, request: web.Request) -> web.Response:
        return web.json_response(self.card_of(self._agent(request)))

    async def _rpc(self, request: web.Request) -> web.Response:
        agent = self._agent(request)
        request_id: Any = None
        try:
            version = request.headers.get("A2A-Version")
            if version is not None and version.split(".")[0] != "1":
                raise RpcError(VERSION_NOT_SUPPORTED, f"A2A version {version} is not served; "
                               f"this server speaks {A2A_VERSION}")
            try:
                call = await read_json(request, limit=MAX_BODY_BYTES)
            except BadRequestBody as exc:
                raise RpcError(INVALID_REQUEST if exc.status == 413 else PARSE_ERROR,
                               str(exc)) from None
            if not isinstance(call, dict) or call.get("jsonrpc") != "2.0" or not isinstance(
                    call.get("method"), str):
                raise RpcError(INVALID_REQUEST, "expected a JSON-RPC 2.0 request object")
            request_id = call.get("id")
            result = await self._call(agent, call["method"], call.get("params"),
                                      remote=request.remote or "unknown")
        except RpcError as exc:
            self._metrics.reject(PROTOCOL, exc.reason)
            return web.json_response({"jsonrpc": "2.0", "id": request_id,
                                      "error": {"code": exc.code, "message": str(exc)}})
        self._metrics.received[PROTOCOL] += 1
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": result})

    async def _call(self, agent: Agent, method: str, params: Any, *,
                    remote: str) -> dict[str, Any]:
        if method in _TASK_METHODS:
            raise RpcError(TASK_NOT_FOUND, "this agent keeps no tasks: every answer is final")
        if method in _UNSUPPORTED:
            raise RpcError(UNSUPPORTED_OPERATION, f"{method} is not supported; use SendMessage")
        if method != "SendMessage":
            raise RpcError(METHOD_NOT_FOUND, f"unknown method {method!r}")
        message = params.get("message") if isinstance(params, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("parts"), list) \
                or not message["parts"]:
            raise RpcError(INVALID_PARAMS, "params.message.parts must be a non-empty list")
        context_id = str(message.get("contextId") or uuid.uuid4())
        texts, data = [], []
        for part in message["parts"]:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and "data" in part:
                data.append(part["data"])
            else:
                raise RpcError(CONTENT_TYPE_NOT_SUPPORTED,
                               "only text and data parts are understood (no raw bytes or urls)")
        sender = f"a2a:{remote}"
        if data:
            if len(data) > 1 or texts:
                raise RpcError(INVALID_PARAMS, "send one data part (a call for proposals) alone")
            return await self._quote(agent, data[0], context_id, sender)
        return await self._chat(agent, "".join(texts), context_id, sender)

    async def _chat(self, agent: Agent, text: str, context_id: str,
                    sender: str) -> dict[str, Any]:
        spec = handler_for(agent, ChatMessage)
        if spec is None:
            answer_text = describe(agent, self._offers(agent))
        else:
            answer = await self._runtime.deliver_local(
                agent, ChatMessage.of_text(text), sender=sender,
                expires_at=self._runtime.clock.now() + QUOTE_WINDOW_S)
            if isinstance(answer, ChatMessage):
                answer_text = answer.text()
            elif isinstance(answer, ErrorReply):
                answer_text = f"(the agent failed to answer: {answer.code})"
            else:
                answer_text = ""
        return {"message": {"messageId": str(uuid.uuid4()), "contextId": context_id,
                            "role": "ROLE_AGENT", "parts": [{"text": answer_text}]}}

    async def _quote(self, agent: Agent, data: Any, context_id: str,
                     sender: str) -> dict[str, Any]:
        spec = handler_for(agent, CallForProposals)
        task_id = str(uuid.uuid4())
        if spec is None:
            return _task(task_id, context_id, "TASK_STATE_REJECTED",
                         f"{agent.name} takes no calls for proposals", {
                             "reason": "unknown_capability",
                             "detail": describe(agent, self._offers(agent))})
        if not isinstance(data, dict):
            raise RpcError(INVALID_PARAMS, "the data part must be an object shaped as a call "
                           "for proposals")
        if "dialogue" in data:
            raise RpcError(INVALID_PARAMS, "not a call for proposals: dialogue: an A2A quote "
                           "opens a dialogue of its own; leave the field out")
        now = self._runtime.clock.now()
        fields = {"respond_by": now + QUOTE_WINDOW_S, **data, "dialogue": uuid.uuid4().hex}
        try:
            for money in ("max_price", "wanted_penalty"):  # JSON states decimal credits
                if money in fields:
                    fields[money] = Credits.parse(fields[money], money, allow_zero=True)
        except UsageError as exc:
            raise RpcError(INVALID_PARAMS, f"not a call for proposals: {exc}") from None
        try:
            cfp = CallForProposals.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise RpcError(INVALID_PARAMS, f"not a call for proposals: {where}: {first['msg']} "
                           "(send capability, task, max_price, max_latency_ms, "
                           "max_deadline_s)") from None
        try:
            answer = await self._runtime.deliver_local(agent, cfp, sender=sender,
                                                       expires_at=cfp.respond_by)
        finally:
            if isinstance(agent, Seller):
                # A quote only: the caller cannot sign an agreement, so nothing stays open or
                # kept. Only this call's own dialogue can be named: (sender, our fresh id).
                agent.withdraw(sender, cfp.dialogue)
        if isinstance(answer, Propose):
            quote = {"seller": agent.address, "capability": cfp.capability,
                     "dialogue": answer.dialogue, **answer.price.document("price"),
                     "latency_ms": answer.latency_ms, "deadline_s": answer.deadline_s,
                     **answer.penalty.document("penalty"), "valid_until": cfp.respond_by}
            return _task(task_id, context_id, "TASK_STATE_COMPLETED",
                         f"Quote for {cfp.capability}: {answer.price} credits. To buy, negotiate "
                         f"as an AAEX agent with {agent.address}; an A2A caller cannot sign "
                         "an agreement.", quote, artifact="quote")
        if isinstance(answer, Decline):
            return _task(task_id, context_id, "TASK_STATE_REJECTED",
                         f"Declined: {answer.reason}" + (f" ({answer.detail})"
                                                         if answer.detail else ""),
                         {"reason": answer.reason, "detail": answer.detail})
        code = answer.code if isinstance(answer, ErrorReply) else "no_answer"
        return _task(task_id, context_id, "TASK_STATE_FAILED", f"No quote: {code}",
                     {"reason": code, "detail": ""})


def _task(task_id: str, context_id: str, state: str, text: str, data: dict[str, Any], *,
          artifact: str = "decline") -> dict[str, Any]:
    status_message = {"messageId": str(uuid.uuid4()), "contextId": context_id,
                      "taskId": task_id, "role": "ROLE_AGENT", "parts": [{"text": text}]}
    return {"task": {"id": task_id, "contextId": context_id,
                     "status": {"state": state, "message": status_message},
                     "artifacts": [{"artifactId": str(uuid.uuid4()), "name": artifact,
                                    "parts": [{"data": data}]}]}}
