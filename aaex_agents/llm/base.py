"""The one interface every language-model backend implements.

Chat messages go in; a `Completion` (text plus token usage) comes out. `complete_json` asks
for output constrained to a pydantic model's JSON schema and returns the validated object.
Timeouts and cancellation live here, once, so every backend behaves the same: a timeout
cancels the generation and raises `LLMTimeout`; cancelling the caller cancels the generation.

A backend implements three methods: `generate`, `open_stream` and `aclose`.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar

import pydantic

from ..errors import LLMOutputInvalid, LLMTimeout, UsageError
from .speed import Speed

M = TypeVar("M", bound=pydantic.BaseModel)


class ChatTurn(TypedDict):
    """One turn of a chat, in the shape every OpenAI-compatible server takes."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, kw_only=True)
class Request:
    """What a backend is asked to do; built by `LLM.chat` and friends.

    Attributes:
        messages: the conversation so far; the model answers the last turn.
        max_tokens: upper bound on generated tokens (default 128: agents ask short questions).
        temperature: 0 (the default) decodes greedily, so answers are reproducible.
        json_schema: when set, decoding is constrained to JSON matching this schema.
        stop: strings that end the generation early.
    """

    messages: tuple[ChatTurn, ...]
    max_tokens: int = 128
    temperature: float = 0.0
    json_schema: Mapping[str, Any] | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.messages:
            raise UsageError("an LLM request needs at least one message, e.g. "
                             "[{'role': 'user', 'content': 'Hello'}]")
        for message in self.messages:
            if message.get("role") not in ("system", "user", "assistant") or not isinstance(
                    message.get("content"), str):
                raise UsageError(f"bad chat message {message!r}: use "
                                 "{'role': 'system'|'user'|'assistant', 'content': str}")
        if self.max_tokens <= 0:
            raise UsageError(f"Request.max_tokens must be positive, got {self.max_tokens}")
        if self.temperature < 0:
            raise UsageError(f"Request.temperature must be >= 0, got {self.temperature}")


@dataclass(frozen=True)
class Usage:
    """Tokens a request consumed, as the engine counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """A finished answer.

    Attributes:
        text: the generated text.
        usage: token counts.
        model: the name of the model that answered (a service reports its version here too).
        finish_reason: "stop" (the model ended), "length" (max_tokens reached) or the
            engine's own word.
        seconds: wall-clock time the engine spent on it.
        ttft_seconds: time from the start to the first generated token, where the engine
            sees it (llama.cpp does); None where it does not.
    """

    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str = "stop"
    seconds: float = 0.0
    ttft_seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What a service ad says about a model.

    Attributes:
        name: the model's name, e.g. "SmolLM2-135M-Instruct".
        quantization: weight format, e.g. "Q4_1" or "bf16".
        backend: which engine runs it ("llama.cpp", "vllm", "openai-compatible").
        tokens_per_second: measured generation throughput; None until measured. After
            `LLMService.measure`, the median of its warmed runs (`speed`).
        ttft_ms: mean measured time to first token, ms; None until measured.
        speed: the warmed, repeated measurement (median, range, runs); None before one.
        context_length: the context window in tokens, where the engine says.
    """

    name: str
    quantization: str
    backend: str
    tokens_per_second: float | None = None
    ttft_ms: float | None = None
    context_length: int | None = None
    speed: Speed | None = None


def user(text: str) -> ChatTurn:
    """A user turn; saves typing the dict."""
    return {"role": "user", "content": text}


def system(text: str) -> ChatTurn:
    """A system turn."""
    return {"role": "system", "content": text}


class LLM(abc.ABC):
    """A language model: a backend engine, or an agent's handle on the node's shared one.

    Use `chat`, `complete_json` and `stream`; backends implement `generate`, `open_stream`
    and `aclose`. Whoever creates a backend closes it with `aclose()`, unless it hands it to
    an `LLMService`, which then closes it.
    """

    default_timeout: float = 120.0
    """Seconds a call may take when the caller gives no timeout."""

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo:
        """Name, quantization and backend of the model that answers."""

    @abc.abstractmethod
    async def generate(self, request: Request) -> Completion:
        """Answer `request` in full.

        Raises:
            LLMUnavailable: there is no engine to ask.
            LLMRequestFailed: the engine failed the request.
        Cancelling the call stops the generation (at the next token for local engines).
        """

    @abc.abstractmethod
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Answer `request` piece by piece: ``async with llm.open_stream(r) as pieces``.

        Leaving the block early stops the generation and releases the engine.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release the engine (threads, processes, connections). Idempotent."""

    # -- what callers use ------------------------------------------------------------------
    async def chat(self, messages: Sequence[ChatTurn], *, max_tokens: int = 128,
                   temperature: float = 0.0, stop: Sequence[str] = (),
                   timeout: float | None = None) -> Completion:
        """Answer the last turn of `messages`.

        Raises:
            LLMTimeout: no answer within `timeout` (default `default_timeout`); the
                generation was cancelled.
            LLMUnavailable, LLMRequestFailed: see `generate`.
            UsageError: malformed messages or settings.
        """
        request = Request(messages=tuple(messages), max_tokens=max_tokens,
                          temperature=temperature, stop=tuple(stop))
        return await self._bounded(request, timeout)

    async def complete_json(self, messages: Sequence[ChatTurn], *, schema: type[M],
                            max_tokens: int = 256, temperature: float = 0.0,
                            timeout: float | None = None) -> M:
        """Answer with JSON constrained to `schema`'s JSON schema, validated into `schema`.

        Decoding is constrained by the engine (a grammar in llama.cpp, structured outputs
        in vLLM), so the text is JSON of the right shape; validation still runs, because
        constraints such as numeric bounds are not all enforced while decoding. Small models
        may still answer nonsense of the right shape: check values that matter.

        Raises:
            LLMOutputInvalid: the answer does not validate (its `text` has the raw answer);
                most often the answer was cut off by `max_tokens`.
            LLMTimeout, LLMUnavailable, LLMRequestFailed: as for `chat`.
        """
        request = Request(messages=tuple(messages), max_tokens=max_tokens,
                          temperature=temperature, json_schema=schema.model_json_schema())
        completion = await self._bounded(request, timeout)
        try:
            return schema.model_validate_json(completion.text)
        except pydantic.ValidationError as exc:
            cut = " (cut off at max_tokens)" if completion.finish_reason == "length" else ""
            raise LLMOutputInvalid(
                f"{self.info.name} answered text that is not a valid {schema.__name__}{cut}: "
                f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}",
                completion.text) from exc

    @asynccontextmanager
    async def stream(self, messages: Sequence[ChatTurn], *, max_tokens: int = 128,
                     temperature: float = 0.0, timeout: float | None = None,
                     ) -> AsyncIterator[AsyncIterator[str]]:
        """Stream the answer: ``async with llm.stream(msgs) as pieces: async for p in pieces``.

        `timeout` bounds the whole generation, measured from entering the block. Leaving the
        block early stops the generation.

        Raises:
            LLMTimeout: the generation did not end within `timeout` (raised by iteration).
            LLMUnavailable, LLMRequestFailed: as for `chat`.
        """
        request = Request(messages=tuple(messages), max_tokens=max_tokens,
                          temperature=temperature)
        limit = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            async with asyncio.timeout(limit):
                stream = self.open_stream(request)
                pieces = await stream.__aenter__()
        except TimeoutError:
            raise LLMTimeout(f"{self.info.name} did not start answering within {limit} s") \
                from None
        exc_info: tuple[Any, Any, Any] = (None, None, None)
        try:
            yield _deadline_iter(pieces, deadline, self.info.name, limit)
        except BaseException as exc:
            exc_info = (type(exc), exc, exc.__traceback__)
            raise
        finally:
            await stream.__aexit__(*exc_info)

    async def _bounded(self, request: Request, timeout: float | None) -> Completion:
        limit = self.default_timeout if timeout is None else timeout
        if limit <= 0:
            raise UsageError(f"timeout must be positive, got {limit}")
        try:
            async with asyncio.timeout(limit):
                return await self.generate(request)
        except TimeoutError as exc:
            if isinstance(exc, LLMTimeout):
                raise
            raise LLMTimeout(f"{self.info.name} did not answer within {limit} s; the "
                             "generation was cancelled") from None


async def _deadline_iter(pieces: AsyncIterator[str], deadline: float, name: str,
                         limit: float) -> AsyncIterator[str]:
    """Yield from `pieces`, raising `LLMTimeout` once `deadline` passes."""
    while True:
        try:
            async with asyncio.timeout_at(_loop_deadline(deadline)):
                piece = await anext(pieces)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise LLMTimeout(f"{name} did not finish streaming within {limit} s") from None
        yield piece


def _loop_deadline(deadline: float) -> float:
    """Convert a `time.monotonic` deadline into the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())

