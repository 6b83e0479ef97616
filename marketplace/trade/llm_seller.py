"""The appliance sells its language model: `LlmSeller`, the built-in ``llm.chat`` seller.

    [llm]
    backend = "llamacpp"                    # the shipped SmolLM2 when model_path is absent

    [[agents]]
    name = "llm"
    class = "marketplace:LlmSeller"
    settings = { price_in_per_1k = 0.01, price_out_per_1k = 0.02, max_tokens_cap = 256 }

The task is an OpenAI-style chat request::

    {"messages": [{"role": "user", "content": "..."}], "max_tokens": 64,
     "temperature": 0.0, "json_schema": {...}, "stop": ["END"]}

(``json_schema`` constrains decoding to that JSON schema; every field but ``messages`` is
optional.) The seller quotes per token: the agreement states its prices per 1,000 input and
output tokens, the token cap (the request's ``max_tokens``, at most `max_tokens_cap`) and its
time-to-first-token and tokens/s promise (`TokenTerms`); the price negotiated is the most the
request can cost, which the buyer escrows. The work runs on ``ctx.llm``, the node's shared
model; the result, which the seller signs, carries the text and the usage its engine counted
(``input_tokens``, ``output_tokens``, ``ttft_ms``, ``generation_ms``). The buyer settles the
tokens used and gets the rest back (marketplace.contracts.sla). Prices are posted: a counter
offer gets the same quote.

Its ad carries the model, quantization, context length, the tokens/s and time to first token
the node's LLM service measured, and the prices, as attributes buyers filter on
(``--where "model == 'SmolLM2-135M-Instruct'"``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from aaex_agents import Context
from aaex_agents.errors import UsageError
from aaex_agents.llm import ModelInfo
from aaex_agents.llm.base import ChatTurn, Request
from aaex_agents.money import ZERO, Credits

from ..contracts.agreement import TokenTerms
from ..contracts.provenance import ModelRef
from ..contracts.sla import INPUT_SLACK
from .delegation import OVER_BUDGET
from .errors import Refusal
from .metering import prompt_bytes
from .negotiation import CallForProposals
from .selling import ServiceSeller
from .strategies import Offer

CAPABILITY = "llm.chat"


class ChatMessage(BaseModel):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: str


class ChatTask(BaseModel):
    """The task `LlmSeller` takes: an OpenAI-style chat request (see the module doc)."""

    model_config = ConfigDict(extra="forbid")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=256, gt=0, strict=True)
    """The most tokens to generate; the seller holds it to its `max_tokens_cap`."""
    temperature: float = 0.0
    json_schema: dict[str, Any] | None = None
    """Constrains decoding to JSON matching this schema."""
    stop: str | list[str] = []


class ChatUsage(BaseModel):
    """What the seller's engine counted of one generation."""

    input_tokens: int
    output_tokens: int
    ttft_ms: int
    generation_ms: int


class ChatResult(BaseModel):
    """The result `LlmSeller` delivers: the text and the engine's usage."""

    text: str
    finish_reason: str
    model: str
    usage: ChatUsage


def chat_request(task: Mapping[str, Any], *, cap: int) -> Request:
    """The engine request a chat task asks for, its ``max_tokens`` held to `cap`.

    Raises:
        ValueError: the task is not a chat request (the message says which field).
    """
    messages = task.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("task.messages: give a non-empty list of {role, content} messages")
    max_tokens = task.get("max_tokens", cap)
    temperature = task.get("temperature", 0.0)
    schema = task.get("json_schema")
    stop = task.get("stop", [])
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0:
        raise ValueError(f"task.max_tokens = {max_tokens!r}: give a positive integer")
    if not isinstance(temperature, int | float) or isinstance(temperature, bool):
        raise ValueError(f"task.temperature = {temperature!r}: give a number")
    if schema is not None and not isinstance(schema, dict):
        raise ValueError("task.json_schema: give a JSON schema object")
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValueError("task.stop: give a string or a list of strings")
    try:
        return Request(messages=tuple(_message(m) for m in messages),
                       max_tokens=min(max_tokens, cap), temperature=float(temperature),
                       json_schema=schema, stop=tuple(stop))
    except UsageError as exc:
        raise ValueError(f"task: {exc}") from None


def _message(value: Any) -> ChatTurn:
    if not isinstance(value, dict) or set(value) - {"role", "content"}:
        raise ValueError(f"task.messages: {value!r} is not a {{role, content}} message")
    return {"role": value.get("role"), "content": value.get("content")}  # type: ignore[typeddict-item]


class LlmSeller(ServiceSeller):
    """Sells chat completions of the node's model, billed per token (see the module doc).

    Settings (credits for prices): `price_in_per_1k` and `price_out_per_1k`, per 1,000
    input and output tokens; `max_tokens_cap`, the most tokens one request may generate;
    `max_ttft_ms` and `min_tokens_per_s`, the generation SLA it promises (0: no speed
    promise); `timeout`, seconds one generation may take.
    """

    capability: ClassVar[str] = CAPABILITY
    task_model: ClassVar[type[BaseModel] | None] = ChatTask
    result_model: ClassVar[type[BaseModel] | None] = ChatResult
    strategy_defaults: ClassVar[Mapping[str, Any]] = {
        "cost": ZERO, "latency_ms": 20_000.0, "deadline_s": 120.0, "penalty_rate": 0.0}

    def __init__(self, *args: Any, price_in_per_1k: float | str = "0.01",
                 price_out_per_1k: float | str = "0.02", max_tokens_cap: int = 256,
                 max_ttft_ms: int = 30_000, min_tokens_per_s: int = 0, timeout: float = 120.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if max_tokens_cap <= 0 or max_ttft_ms <= 0 or min_tokens_per_s < 0 or timeout <= 0:
            raise UsageError("LlmSeller: max_tokens_cap, max_ttft_ms and timeout must be "
                             "positive, min_tokens_per_s >= 0")
        # decimal credits as the node's TOML states them: read once, at this edge
        self.input_per_1k = Credits.parse(price_in_per_1k, "price_in_per_1k", allow_zero=True)
        self.output_per_1k = Credits.parse(price_out_per_1k, "price_out_per_1k",
                                           allow_zero=True)
        self.max_tokens_cap = max_tokens_cap
        self.max_ttft_ms = max_ttft_ms
        self.min_tokens_per_s = min_tokens_per_s
        self.timeout = timeout
        self.model_info: Callable[[], ModelInfo] | None = None
        """What the ad says of the model; the node binds its LLM service's `describe`."""
        self.model_file: ModelRef | None = None
        """The model file the node runs (its name and sha256, hashed once at start); None:
        provenance names this class's code instead (a model served elsewhere)."""

    def provenance_model(self) -> tuple[ModelRef, str]:
        """The node's model file, when it runs one, and the code version of this class."""
        model, code_version = super().provenance_model()
        return (self.model_file or model), code_version

    def cap_price(self, task: Mapping[str, Any]) -> tuple[Credits, TokenTerms]:
        """The most `task` can cost and the per-token terms it is sold on.

        Raises:
            ValueError: the task is not a chat request.
        """
        request = chat_request(task, cap=self.max_tokens_cap)
        input_bound = prompt_bytes(task) + INPUT_SLACK
        cost = input_bound * self.input_per_1k + request.max_tokens * self.output_per_1k
        terms = TokenTerms(input_per_1k=self.input_per_1k, output_per_1k=self.output_per_1k,
                           max_output_tokens=request.max_tokens, max_ttft_ms=self.max_ttft_ms,
                           min_tokens_per_s=self.min_tokens_per_s)
        return Credits(-(-cost.micro // 1000)), terms  # rounded up: the cap covers it all

    def quote(self, cfp: CallForProposals, offer: Offer) -> Offer:
        """The posted per-token quote for this request; declines one over the budget."""
        try:
            cap, terms = self.cap_price(cfp.task)
        except ValueError as exc:
            raise Refusal("bad_task", str(exc)) from None
        if cap > cfp.max_price:
            raise Refusal(OVER_BUDGET,
                          f"this request costs up to {cap} credits "
                          f"({terms.max_output_tokens} output tokens at "
                          f"{self.output_per_1k}/1k, input at {self.input_per_1k}/1k), above "
                          f"the budget {cfp.max_price}")
        return Offer(cap, offer.latency_ms, offer.deadline_s,
                     self.strategy.penalty_for(cap.micro), terms)

    async def perform(self, ctx: Context, task: dict[str, Any]) -> dict[str, Any]:
        """Run the chat request on the node's model; the result carries the engine's usage.

        Raises:
            ValueError: the task is not a chat request.
            LLMError: the model failed or timed out (the buyer settles it as not delivered).
        """
        request = chat_request(task, cap=self.max_tokens_cap)
        llm = ctx.llm
        async with asyncio.timeout(self.timeout):
            completion = await llm.generate(request)
        ttft = completion.ttft_seconds if completion.ttft_seconds is not None \
            else completion.seconds
        return {"text": completion.text, "finish_reason": completion.finish_reason,
                "model": completion.model or llm.info.name,
                "usage": {"input_tokens": completion.usage.prompt_tokens,
                          "output_tokens": completion.usage.completion_tokens,
                          "ttft_ms": round(ttft * 1000),
                          "generation_ms": max(0, round((completion.seconds - ttft) * 1000))}}

    def ad_attributes(self) -> dict[str, str | int | float]:
        """What the ad says: the model, what the node measured of it, the per-token prices.

        Prices are decimal credits with their ``*_micro`` twin (`Credits.document`); the
        speed is the median of the node's warmed runs with their range
        (``tokens_per_s_low``/``_high`` over ``tokens_per_s_runs``).

        The node's `offers_of` puts these into the signed ad; a figure not measured yet is
        left out rather than advertised as zero.
        """
        info = self.model_info() if self.model_info is not None else None
        attributes: dict[str, str | int | float] = {
            **self.input_per_1k.document("price_in_per_1k"),
            **self.output_per_1k.document("price_out_per_1k"),
            "max_tokens_cap": self.max_tokens_cap, "max_ttft_ms": self.max_ttft_ms,
            "min_tokens_per_s": self.min_tokens_per_s}
        if info is not None:
            measured: dict[str, str | int | float | None] = {
                "model": info.name, "quantization": info.quantization, "backend": info.backend,
                "context_length": info.context_length,
                "tokens_per_s": None if info.tokens_per_second is None
                else round(info.tokens_per_second, 2),
                "ttft_ms": None if info.ttft_ms is None else round(info.ttft_ms, 1)}
            if info.speed is not None:  # the warmed runs' range, so a buyer sees the spread
                measured.update(tokens_per_s_low=round(info.speed.low, 2),
                                tokens_per_s_high=round(info.speed.high, 2),
                                tokens_per_s_runs=info.speed.runs)
            attributes.update({k: v for k, v in measured.items() if v is not None})
        return attributes
