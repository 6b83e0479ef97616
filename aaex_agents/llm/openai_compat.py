"""Client for OpenAI-compatible servers: ``vllm serve`` on an appliance, or llama.cpp's.

The production path: the appliance runs ``vllm serve`` and the node talks to it over HTTP
on loopback, so the engine's lifetime (minutes to load, GPU memory) is separate from the
node's. The same client works against ``python -m llama_cpp.server``.

Failure policy: a refused or dropped connection and a 5xx answer are retried with
exponential backoff (`RetryPolicy`); when the attempts run out the call raises
`LLMUnavailable` naming the URL. The connection pool is kept, so once the server is back
the next call succeeds: nothing needs reopening. A 4xx answer is our request's fault and is
not retried (`LLMRequestFailed`). Streams are retried only until the first byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from typing_extensions import override

from ..errors import LLMRequestFailed, LLMUnavailable, UsageError
from .base import LLM, Completion, ModelInfo, Request, Usage

logger = logging.getLogger(__name__)

SchemaStyle = Literal["json_schema", "json_object"]
"""How the server takes a JSON schema: OpenAI's ``json_schema`` response format (vLLM), or
``json_object`` with a ``schema`` member (llama-cpp-python's server)."""


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retries of refused connections and 5xx answers.

    Attributes:
        attempts: tries in all, the first included (default 4).
        base_delay: wait before the second try; it doubles each time (default 0.25 s).
        max_delay: the longest wait between tries (default 4 s).
    """

    attempts: int = 4
    base_delay: float = 0.25
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise UsageError("RetryPolicy needs 0 <= base_delay <= max_delay, got "
                             f"{self.base_delay} and {self.max_delay}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class _Retryable(Exception):
    """A failure worth another try; carries what to say when the tries run out."""

    def __init__(self, message: str, *, unavailable: bool) -> None:
        super().__init__(message)
        self.unavailable = unavailable


class OpenAICompatLLM(LLM):
    """Chat completions from an OpenAI-compatible server at `base_url` (no ``/v1``).

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``.
        model: the served model's id; None asks the server (`connect` does).
        quantization: what ads should say about the weights (the API does not tell).
        schema_style: how to send JSON schemas; "json_schema" for vLLM and OpenAI,
            "json_object" for llama-cpp-python's server.
        retry: retries of connection failures and 5xx answers.
        connect_timeout: seconds to wait for a TCP connection (default 5).
        api_key: sent as a bearer token when set.
    """

    def __init__(self, base_url: str, *, model: str, quantization: str = "unknown",
                 schema_style: SchemaStyle = "json_schema", retry: RetryPolicy | None = None,
                 connect_timeout: float = 5.0, api_key: str | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000, "
                             f"got {base_url!r}")
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self._model = model
        self._info = ModelInfo(name=model, quantization=quantization,
                               backend="openai-compatible")
        self._schema_style = schema_style
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    async def connect(cls, base_url: str, *, model: str | None = None,
                      **options: Any) -> OpenAICompatLLM:
        """Create a client; without `model`, use the first model the server lists.

        Raises:
            LLMUnavailable: `model` is None and the server cannot be reached.
        """
        if model is None:
            models = await list_models(base_url, timeout=options.get("connect_timeout", 5.0))
            if not models:
                raise LLMUnavailable(f"the LLM server at {base_url} serves no model")
            model = models[0]
        return cls(base_url, model=model, **options)

    @property
    @override
    def info(self) -> ModelInfo:
        return self._info

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise UsageError(f"this client of {self.base_url} is closed; create a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        return self._session

    def _body(self, request: Request, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self._model, "messages": list(request.messages),
                                "max_tokens": request.max_tokens,
                                "temperature": request.temperature, "stream": stream}
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.json_schema is not None:
            schema = dict(request.json_schema)
            body["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
                if self._schema_style == "json_schema"
                else {"type": "json_object", "schema": schema})
        return body

    @asynccontextmanager
    async def _post(self, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to chat/completions with retries; yield the first 2xx response."""
        url = f"{self.base_url}/v1/chat/completions"
        session = self._client()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await session.post(url, json=body)
                if response.status >= 500:
                    detail = await _detail(response)
                    response.release()
                    raise _Retryable(f"{url} answered {response.status}: {detail}",
                                     unavailable=response.status == 503)
            except (aiohttp.ClientConnectionError, _Retryable) as exc:
                # ClientConnectionError covers refused, reset and dropped keep-alive sockets.
                if attempt >= self._retry.attempts:
                    if isinstance(exc, _Retryable) and not exc.unavailable:
                        raise LLMRequestFailed(f"{exc} (after {attempt} attempts)") from None
                    raise LLMUnavailable(f"no usable answer from the LLM server at {url} "
                                         f"after {attempt} attempts: {exc}") from exc
                delay = self._retry.delay(attempt)
                logger.debug("llm.request.retry %s attempt %d failed (%s); next in %.2f s",
                             url, attempt, exc, delay)
                await asyncio.sleep(delay)
                continue
            try:
                if response.status >= 400:
                    raise LLMRequestFailed(f"{url} refused the request with {response.status}: "
                                           f"{await _detail(response)}")
                yield response
            finally:
                response.release()
            return

    @override
    async def generate(self, request: Request) -> Completion:
        """See `LLM.generate`.

        Raises:
            LLMUnavailable: the server did not answer usably within the retry policy.
            LLMRequestFailed: it refused the request (4xx) or answered garbage.
        """
        started = time.monotonic()
        async with self._post(self._body(request, stream=False)) as response:
            try:
                data = await response.json()
                choice = data["choices"][0]
                text = choice["message"]["content"] or ""
            except (aiohttp.ClientError, ValueError, KeyError, IndexError, TypeError) as exc:
                raise LLMRequestFailed(f"unreadable answer from {self.base_url}: {exc}") from exc
        usage = data.get("usage") or {}
        return Completion(text=text, usage=Usage(usage.get("prompt_tokens", 0),
                                                 usage.get("completion_tokens", 0)),
                          model=str(data.get("model") or self._model),
                          finish_reason=choice.get("finish_reason") or "stop",
                          seconds=time.monotonic() - started)

    @override
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        """Server-sent events: one ``data: {json}`` line per piece, then ``data: [DONE]``."""
        async with self._post(self._body(request, stream=True)) as response:
            yield _sse_pieces(response, self.base_url)

    @override
    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<OpenAICompatLLM {self._model} at {self.base_url} {state}>"


async def _sse_pieces(response: aiohttp.ClientResponse, base_url: str) -> AsyncIterator[str]:
    try:
        async for raw in response.content:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue  # blank separators and ": keep-alive" comments
            payload = line[len("data:"):].strip()
            if payload == "[DONE]":
                return
            event = json.loads(payload)
            if "error" in event:
                raise LLMRequestFailed(f"{base_url} failed while streaming: {event['error']}")
            for choice in event.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise LLMUnavailable(f"the LLM server at {base_url} dropped the stream: {exc}") from exc
    except ValueError as exc:
        raise LLMRequestFailed(f"unreadable event from {base_url}: {exc}") from exc


async def _detail(response: aiohttp.ClientResponse) -> str:
    """A short human text of an error response's body."""
    try:
        text = await response.text()
    except (aiohttp.ClientError, UnicodeDecodeError):
        return "(unreadable body)"
    return text[:300]


async def list_models(base_url: str, *, timeout: float = 5.0) -> list[str]:
    """The model ids the server at `base_url` lists under ``/v1/models``.

    Raises:
        LLMUnavailable: no answer within `timeout`, or not an OpenAI-compatible answer.
    """
    url = f"{base_url.rstrip('/').removesuffix('/v1')}/v1/models"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.get(url) as response:
            response.raise_for_status()
            data: Mapping[str, Any] = await response.json()
            return [str(m["id"]) for m in data.get("data", [])]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        raise LLMUnavailable(f"no LLM server answers at {url}: {exc!r}") from exc


async def wait_until_ready(base_url: str, *, timeout: float, poll: float = 0.25) -> list[str]:
    """Poll ``/v1/models`` until the server lists a model; return the ids.

    For starting a server and waiting for it without guessing a sleep.

    Raises:
        LLMUnavailable: still not ready after `timeout` seconds (the last failure attached).
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            models = await list_models(base_url, timeout=max(0.1, min(5.0, remaining)))
        except LLMUnavailable as exc:
            last = exc
        else:
            if models:
                return models
            last = LLMUnavailable(f"{base_url} lists no model yet")
        if time.monotonic() + poll >= deadline:
            raise LLMUnavailable(f"the LLM server at {base_url} was not ready within "
                                 f"{timeout} s: {last}") from last
        await asyncio.sleep(poll)
