"""An OpenAI-compatible gateway: any OpenAI client buys chat completions on the market.

    [gateway]
    listen = "127.0.0.1:8703"    # absent: no gateway
    agent = "shopper"            # the hosted agent that buys (and pays) for every request
    budget = 0.5                 # credits one request may cost at most (X-AAEX-Budget overrides)
    deadline = 60                # seconds one request may take, negotiation included

It serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (``stream: true`` as
server-sent events), with the node's admin token as the bearer key (401 without it). Each
request is bought as one ``llm.chat`` purchase by `agent`, through the node's market: its
``model`` picks the sellers (``model == '<id>'`` on their ads; ``aaex:any`` takes any), the
budget caps the escrow, and the receipt settles the tokens used. With no seller at all, a
node that has its own model answers locally. A budget below every seller's quote gets an
OpenAI-shaped error (HTTP 402) naming each seller's reason.

A purchase is one signed delivery, so a streamed answer from the market arrives whole and is
sent as events once it is in; a local answer streams token by token. Responses carry
OpenAI's ``usage`` and an ``aaex`` object (agreement, seller, amount paid and refunded).

It listens through `open_http_listener` with `GATEWAY_LIMITS` (header and body timeouts,
connections in all and per address), and reads a body as every other HTTP surface of the
node does (`aaex_agents.transport.bodies.read_json`): at most 1 MiB, and JSON that is not
JSON or is nested too deep gets a 400 naming the cause.

`GatewaySettings` is the ``[gateway]`` table of the node's configuration.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import Field, model_validator

from aaex_agents import Agent
from aaex_agents.errors import AaexError, BadRequestBody, LLMError, UsageError
from aaex_agents.llm import LLMService
from aaex_agents.llm.base import Completion
from aaex_agents.money import ONE_CREDIT, Credits, DecimalCredits
from aaex_agents.runtime import Runtime
from aaex_agents.transport.bodies import read_json
from aaex_agents.transport.listener import ServerLimits, open_http_listener

from ..trade.delegation import Delegated
from ..trade.errors import DelegationFailed
from ..trade.llm_seller import CAPABILITY, chat_request
from ..trade.market import NodeMarket
from .tables import HostPort, Table, problem, split_host_port

logger = logging.getLogger(__name__)

ANY_MODEL = "aaex:any"
"""The model id that takes any seller of ``llm.chat``."""
BUDGET_HEADER = "X-AAEX-Budget"
_MODEL_ID = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,200}$")
ModelLister = Callable[[], Awaitable[list[str]]]
"""The model ids the market's ``llm.chat`` sellers advertise now."""
MAX_BODY_BYTES = 1 << 20
"""Largest request body read (1 MiB); a larger one gets 413."""
GATEWAY_LIMITS = ServerLimits(max_connections=256, max_connections_per_ip=64)
"""Each request is a purchase on the market, one at a time per client: a few hundred open at
once is far more than the node's buyer can negotiate, and what is left of 64 per address
serves other clients."""


class GatewaySettings(Table):
    """The ``[gateway]`` section.

    Attributes:
        listen: host:port of the gateway; None (the default) turns it off.
        agent: name of the hosted agent that buys; required with `listen` (`NodeConfig`
            checks that an ``[[agents]]`` entry has that name).
        budget: credits one request may cost at most (default 1).
        deadline: seconds one request may take (default 60).
    """

    listen: HostPort | None = None
    agent: str | None = Field(default=None, min_length=1)
    budget: DecimalCredits = ONE_CREDIT
    deadline: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _agent_with_listen(self) -> GatewaySettings:
        if self.listen is not None and self.agent is None:
            raise problem("gateway.agent: name the hosted agent that buys for the gateway, "
                          "e.g. agent = \"shopper\"")
        return self

    @property
    def enabled(self) -> bool:
        """True when the gateway listens."""
        return self.listen is not None


class _Refused(Exception):
    """A request the gateway answers with an OpenAI-shaped error (caught by its middleware)."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param

    def response(self) -> web.Response:
        """The error as OpenAI's clients expect it."""
        return web.json_response({"error": {"message": str(self), "type": self.kind,
                                             "param": self.param, "code": self.code}},
                                 status=self.status)


@dataclass
class _Answer:
    """One completion, bought or local, before it is shaped for the client."""

    text: str
    finish_reason: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    aaex: dict[str, Any]


class OpenAIGateway:
    """The request handlers; `open_gateway` serves them."""

    def __init__(self, runtime: Runtime, market: NodeMarket, agent: Agent, *,
                 settings: GatewaySettings, token: str, llm: LLMService | None,
                 models: ModelLister) -> None:
        self._runtime, self._market, self._agent = runtime, market, agent
        self._settings, self._token, self._llm, self._models = settings, token, llm, models

    def app(self) -> web.Application:
        """The aiohttp application with the bearer check in front of every route."""
        app = web.Application(middlewares=[self._auth], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        return app

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                    ) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")
        scheme, _, key = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(),
                                                                 self._token.encode()):
            return _Refused(401, "missing or wrong API key: send the node's admin token "
                                "(data_dir/admin.token) as the bearer key",
                                code="invalid_api_key").response()
        try:
            return await handler(request)
        except _Refused as exc:
            return exc.response()

    async def models(self, request: web.Request) -> web.Response:
        """The market's advertised models, the local one, and ``aaex:any``."""
        ids = [ANY_MODEL]
        try:
            ids += await self._models()
        except (AaexError, TimeoutError):
            logger.warning("listing the market's models failed", exc_info=True)
        if self._llm is not None:
            ids.append(self._llm.describe().name)
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "aaex"}
                for m in dict.fromkeys(ids)]
        return web.json_response({"object": "list", "data": data})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        """Buy one chat completion on the market (or answer locally), OpenAI's way."""
        try:
            body = await read_json(request, limit=MAX_BODY_BYTES)
        except BadRequestBody as exc:
            raise _Refused(exc.status, str(exc)) from None
        if not isinstance(body, dict):
            raise _Refused(400, "the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not _MODEL_ID.match(model):
            raise _Refused(400, f"model = {model!r}: give a model id from /v1/models, or "
                               f"{ANY_MODEL!r}", param="model")
        task = _task_of(body)
        budget = self._budget(request)
        answer = await self._answer(model, task, budget)
        if body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return await _stream(request, answer, usage)
        return web.json_response(_completion_body(answer))

    def _budget(self, request: web.Request) -> Credits:
        header = request.headers.get(BUDGET_HEADER)
        if header is None:
            return self._settings.budget
        try:
            return Credits.parse(header, BUDGET_HEADER)
        except UsageError as exc:
            raise _Refused(400, str(exc), param=BUDGET_HEADER) from None

    async def _answer(self, model: str, task: dict[str, Any], budget: Credits) -> _Answer:
        where = None if model == ANY_MODEL else f"model == '{model}'"
        delegator = self._market.for_agent(self._agent.address)
        try:
            done = await delegator.delegate(
                self._runtime.context(self._agent), CAPABILITY, task, budget=budget,
                deadline=self._settings.deadline, where=where)
        except DelegationFailed as failed:
            if failed.attempts:
                reasons = "; ".join(f"{a.seller[:16]}…: {a.verdict} ({a.detail})"
                                    for a in failed.attempts)
                over = any("over_budget" in a.detail for a in failed.attempts)
                raise _Refused(
                    402 if over else 502,
                    f"no seller of model {model!r} sold within the budget of "
                    f"{budget} credits: {reasons}",
                    kind="insufficient_budget" if over else "market_error",
                    code="over_budget" if over else "not_delivered") from None
            return await self._local(model, task)
        except UsageError as exc:
            raise _Refused(400, str(exc)) from None
        return _bought(done)

    async def _local(self, model: str, task: dict[str, Any]) -> _Answer:
        """No seller: the node's own model answers, when it is the one asked for."""
        if self._llm is None or model not in (ANY_MODEL, self._llm.describe().name):
            raise _Refused(404, f"no seller advertises model {model!r} and this node has "
                               "no such model of its own", code="model_not_found",
                               param="model")
        try:
            request = chat_request(task, cap=task.get("max_tokens", 128))
            completion: Completion = await self._llm.for_agent(self._agent.address).generate(
                request)
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        except LLMError as exc:
            raise _Refused(502, f"the local model failed: {exc}", kind="server_error")\
                from None
        return _Answer(completion.text, completion.finish_reason, completion.model,
                       completion.usage.prompt_tokens, completion.usage.completion_tokens,
                       {"source": "local"})


def _task_of(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``llm.chat`` task an OpenAI request asks for; 400 naming the field otherwise."""
    task: dict[str, Any] = {"messages": body.get("messages")}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", 128))
    task["max_tokens"] = max_tokens
    if "temperature" in body and body["temperature"] is not None:
        task["temperature"] = body["temperature"]
    if body.get("stop") is not None:
        task["stop"] = body["stop"]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {})
        task["json_schema"] = schema.get("schema") if isinstance(schema, dict) else None
    try:
        chat_request(task, cap=max_tokens if isinstance(max_tokens, int) else 1)
    except ValueError as exc:
        raise _Refused(400, str(exc).replace("task.", "")) from None
    return task


def _bought(done: Delegated) -> _Answer:
    result, receipt = done.result, done.receipt.receipt
    usage = result.get("usage", {})
    return _Answer(str(result.get("text", "")), str(result.get("finish_reason", "stop")),
                   str(result.get("model", "")), int(usage.get("input_tokens", 0)),
                   int(usage.get("output_tokens", 0)),
                   {"source": "market", "agreement_id": done.agreement.id,
                    "seller": done.agreement.agreement.seller,
                    **receipt.release.document("paid"),
                    **receipt.refund.document("refunded")})


def _usage(answer: _Answer) -> dict[str, int]:
    return {"prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens}


def _completion_body(answer: _Answer) -> dict[str, Any]:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
            "created": int(time.time()), "model": answer.model,
            "choices": [{"index": 0, "finish_reason": answer.finish_reason,
                         "message": {"role": "assistant", "content": answer.text}}],
            "usage": _usage(answer), "aaex": answer.aaex}


async def _stream(request: web.Request, answer: _Answer, usage: bool) -> web.StreamResponse:
    """Send `answer` as OpenAI's chunk events, then ``[DONE]``."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": answer.model}

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""}, None),
              chunk({"content": answer.text}, None), chunk({}, answer.finish_reason)]
    if usage:
        events.append({**base, "choices": [], "usage": _usage(answer), "aaex": answer.aaex})
    for event in events:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


@asynccontextmanager
async def open_gateway(runtime: Runtime, market: NodeMarket, settings: GatewaySettings, *,
                       token: str, llm: LLMService | None, models: ModelLister,
                       limits: ServerLimits | None = None) -> AsyncIterator[str]:
    """Serve the gateway until the block exits; yields its base URL once listening.

    It listens with `limits` (default `GATEWAY_LIMITS`); leaving stops the listener and
    gives requests in flight 2 s.

    Raises:
        UsageError: `settings` has no `listen`, or `agent` names no hosted agent.
        AddressInUse, TransportError: the address cannot be bound.
    """
    if settings.listen is None:
        raise UsageError("open_gateway needs gateway.listen")
    address = split_host_port(settings.listen)
    agent = next((a for a in runtime.agents.values() if a.name == settings.agent), None)
    if agent is None:
        raise UsageError(f"gateway.agent = {settings.agent!r}: no hosted agent has that name")
    gateway = OpenAIGateway(runtime, market, agent, settings=settings, token=token, llm=llm,
                      models=models)
    async with open_http_listener(gateway.app(), *address, limits=limits or GATEWAY_LIMITS,
                                  name="gateway") as listener:
        url = f"http://{address[0]}:{listener.port}"
        logger.info("OpenAI-compatible gateway at %s/v1, buying as %s", url, agent.name)
        yield url
