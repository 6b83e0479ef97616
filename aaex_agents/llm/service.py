"""One language-model service per node, shared by all its agents.

Why one: an engine such as vLLM batches the requests that reach it at the same time
(continuous batching), so agents must not each own an engine, nor queue their calls one by
one. The service lets up to `concurrency` requests reach the engine at once and queues the
rest fairly between agents (`FairLimiter`).

Model versions: several engines may be registered at once under version names, with
weights that route new requests between them (a canary). `swap` sends all new requests to
one version and waits until the others have finished what they already started, so a model
upgrade fails no request; `rollback` undoes the last swap or weight change the same way.

    async with open_llm_service(await LlamaCppLLM.load(), version="smollm2-q4") as llm:
        async with open_runtime(agents, services=Services(llm=llm)) as runtime:
            ...  # handlers call ctx.llm.chat(...)

Ownership: the service owns every engine registered with it and closes them on exit
(`retire` closes one earlier).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from typing_extensions import override

from ..errors import LLMError, LLMTimeout, UsageError
from .base import LLM, ChatTurn, Completion, ModelInfo, Request
from .fair import FairLimiter
from .speed import Speed, decode_rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class LLMServiceConfig:
    """Settings of the node's LLM service.

    Attributes:
        concurrency: requests that may reach the engines at once (default 8: vLLM batches
            them; llama.cpp runs them one after another in its own thread anyway).
        drain_timeout: how long `swap`, `rollback` and `retire` wait for in-flight requests
            of the versions they take out of service (default 300 s).
        seed: seeds the canary routing's random choice, for reproducible tests.
        default_timeout: seconds an agent's call may take when it gives no timeout (default
            120 s, as `LLM.default_timeout`); agents' handles take it from here because
            they, not the engines, bound each call.
    """

    concurrency: int = 8
    drain_timeout: float = 300.0
    seed: int | None = None
    default_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.concurrency <= 0:
            raise UsageError(f"LLMServiceConfig.concurrency must be positive, "
                             f"got {self.concurrency}")
        if self.drain_timeout <= 0:
            raise UsageError(f"LLMServiceConfig.drain_timeout must be positive, "
                             f"got {self.drain_timeout}")
        if self.default_timeout <= 0:
            raise UsageError(f"LLMServiceConfig.default_timeout must be positive, "
                             f"got {self.default_timeout}")


class _Throughput:
    """Tokens generated per second of time during which at least one request ran.

    Measured over busy time, not per request: with batching, requests overlap, and summing
    their durations would understate what the engine delivers.
    """

    def __init__(self) -> None:
        self.running = 0
        self.tokens = 0
        self.busy_seconds = 0.0
        self._busy_since = 0.0

    def start(self) -> None:
        if self.running == 0:
            self._busy_since = time.monotonic()
        self.running += 1

    def stop(self, tokens: int) -> None:
        self.running -= 1
        self.tokens += tokens
        if self.running == 0:
            self.busy_seconds += time.monotonic() - self._busy_since

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.busy_seconds if self.busy_seconds > 0 else None


@dataclass
class LLMMetrics:
    """What the service has done since it opened.

    Attributes:
        requests: requests that reached an engine.
        completed: requests that an engine answered.
        errors: failed requests by error class name (timeouts and cancellations included).
        by_agent: requests per agent address.
        queue_wait_total: seconds requests spent queued, summed.
        queue_wait_max: the longest single wait.
        peak_in_flight: the most requests at an engine at once.
        prompt_tokens: prompt tokens of answered requests.
        completion_tokens: generated tokens of answered requests.
    """

    requests: int = 0
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_agent: Counter[str] = field(default_factory=Counter)
    queue_wait_total: float = 0.0
    queue_wait_max: float = 0.0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_total: float = 0.0
    """Seconds to first token, summed over the answered requests whose engine measured it."""
    ttft_count: int = 0
    _throughput: _Throughput = field(default_factory=_Throughput, repr=False)

    @property
    def tokens_per_second(self) -> float | None:
        """Generated tokens per second while the engines were busy; None before any."""
        return self._throughput.tokens_per_second

    @property
    def mean_ttft_ms(self) -> float | None:
        """Mean time to first token in ms, over the requests that measured it; None before."""
        return self.ttft_total * 1000 / self.ttft_count if self.ttft_count else None

    @property
    def mean_queue_wait(self) -> float:
        """Average seconds a request waited for a slot."""
        return self.queue_wait_total / self.requests if self.requests else 0.0


class ModelVersion:
    """One registered engine: its name, routing weight and live counters."""

    def __init__(self, name: str, llm: LLM, weight: float) -> None:
        self.name = name
        self.llm = llm
        self.weight = weight
        self.in_flight = 0
        self.requests = 0
        self.errors = 0
        self.throughput = _Throughput()

    def __repr__(self) -> str:
        return (f"<ModelVersion {self.name} {self.llm.info.name} weight={self.weight} "
                f"in_flight={self.in_flight} requests={self.requests} errors={self.errors}>")


class LLMService:
    """The node's shared language model. Open it with `open_llm_service`.

    Agents use it through `for_agent(address)` (what `ctx.llm` returns), so the fair queue
    knows who asks.
    """

    def __init__(self, config: LLMServiceConfig) -> None:
        self.config = config
        self.metrics = LLMMetrics()
        self._limiter = FairLimiter(config.concurrency)
        self._versions: dict[str, ModelVersion] = {}
        self._history: list[dict[str, float]] = []
        self._changed = asyncio.Condition()
        self._random = random.Random(config.seed)  # noqa: S311 - routing, not security
        self._closed = False
        self._speed: Speed | None = None
        """The last `measure`: what ads say of the model's speed."""

    # -- versions ---------------------------------------------------------------------------
    @property
    def versions(self) -> Mapping[str, ModelVersion]:
        """Registered versions by name."""
        return dict(self._versions)

    def add_version(self, name: str, llm: LLM, *, weight: float = 0.0) -> None:
        """Register `llm` as version `name`; the service now owns it and will close it.

        A new version gets no traffic (weight 0) unless given a weight; use `set_weights`
        for a canary and `swap` to move all traffic.

        Raises:
            UsageError: the name is taken, the weight is negative or the service is closed.
        """
        self._check_open()
        if name in self._versions:
            raise UsageError(f"model version {name!r} is already registered; retire it first "
                             "or pick another name")
        if weight < 0:
            raise UsageError(f"the weight of {name!r} must be >= 0, got {weight}")
        self._versions[name] = ModelVersion(name, llm, weight)
        logger.info("model version %s registered: %s (weight %s)", name, llm.info.name, weight)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Route new requests between versions in proportion to `weights` (a canary).

        Versions not named get weight 0. `rollback` restores the weights before this call.

        Raises:
            UsageError: an unknown version, a negative weight, or all weights 0.
        """
        self._check_open()
        unknown = sorted(set(weights) - set(self._versions))
        if unknown:
            raise UsageError(f"unknown model version(s) {unknown}; registered: "
                             f"{sorted(self._versions)}")
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise UsageError(f"weights must be >= 0 with at least one > 0, got {dict(weights)}")
        self._history.append(self._weights())
        self._apply({name: weights.get(name, 0.0) for name in self._versions})

    async def swap(self, name: str, *, drain_timeout: float | None = None) -> None:
        """Send every new request to version `name`; return when the others are drained.

        Requests already running on other versions finish there; none is failed or retried.

        Raises:
            UsageError: `name` is not registered.
            LLMTimeout: the old versions still ran requests after `drain_timeout`; the swap
                itself took effect and those requests keep running.
        """
        self.set_weights({name: 1.0})
        await self._drain(lambda v: v.weight == 0, drain_timeout)

    async def rollback(self, *, drain_timeout: float | None = None) -> None:
        """Undo the last `swap` or `set_weights`, draining versions that lose all traffic.

        Raises:
            UsageError: there is nothing to roll back, or a version it names was retired.
            LLMTimeout: as for `swap`.
        """
        self._check_open()
        if not self._history:
            raise UsageError("nothing to roll back: no swap or set_weights happened")
        previous = self._history.pop()
        missing = sorted(n for n, w in previous.items() if w > 0 and n not in self._versions)
        if missing:
            raise UsageError(f"cannot roll back: version(s) {missing} were retired")
        if not any(previous.get(name, 0.0) > 0 for name in self._versions):
            raise UsageError("cannot roll back: the previous routing sent no traffic anywhere")
        self._apply({name: previous.get(name, 0.0) for name in self._versions})
        await self._drain(lambda v: v.weight == 0, drain_timeout)

    async def retire(self, name: str, *, drain_timeout: float | None = None) -> None:
        """Unregister version `name` once its requests finished, and close its engine.

        Raises:
            UsageError: unknown name, or it still has routing weight (swap away first).
            LLMTimeout: its requests did not finish in time; it stays registered.
        """
        version = self._versions.get(name)
        if version is None:
            raise UsageError(f"unknown model version {name!r}")
        if version.weight > 0:
            raise UsageError(f"version {name!r} still receives traffic; swap to another "
                             "version before retiring it")
        await self._drain(lambda v: v is version, drain_timeout)
        del self._versions[name]
        # Routings that sent traffic to it cannot come back; the others forget it.
        self._history = [{n: w for n, w in weights.items() if n != name}
                         for weights in self._history if weights.get(name, 0) == 0]
        await version.llm.aclose()
        logger.info("model version %s retired", name)

    def _weights(self) -> dict[str, float]:
        return {name: v.weight for name, v in self._versions.items()}

    def _apply(self, weights: dict[str, float]) -> None:
        for name, weight in weights.items():
            self._versions[name].weight = weight
        logger.info("model routing now %s", {n: w for n, w in weights.items() if w > 0})

    async def _drain(self, which: Callable[[ModelVersion], bool],
                     drain_timeout: float | None) -> None:
        limit = self.config.drain_timeout if drain_timeout is None else drain_timeout
        try:
            async with asyncio.timeout(limit), self._changed:
                await self._changed.wait_for(
                    lambda: all(v.in_flight == 0 for v in self._versions.values() if which(v)))
        except TimeoutError:
            busy = {v.name: v.in_flight for v in self._versions.values()
                    if which(v) and v.in_flight}
            raise LLMTimeout(f"model version(s) still running requests after {limit} s: "
                             f"{busy}") from None

    def _route(self) -> ModelVersion:
        candidates = [v for v in self._versions.values() if v.weight > 0]
        if not candidates:
            raise UsageError("no model version receives traffic; register one with a weight "
                             "or call swap()")
        if len(candidates) == 1:
            return candidates[0]
        return self._random.choices(candidates, weights=[v.weight for v in candidates])[0]

    # -- requests ---------------------------------------------------------------------------
    def for_agent(self, address: str) -> AgentLLM:
        """The handle an agent uses; its requests queue in `address`'s fair line."""
        return AgentLLM(self, address)

    @asynccontextmanager
    async def _engine(self, agent: str) -> AsyncIterator[ModelVersion]:
        """Wait for a fair slot, route to a version, and count the request on it."""
        self._check_open()
        queued = time.monotonic()
        async with self._limiter.slot(agent):
            waited = time.monotonic() - queued
            metrics = self.metrics
            metrics.requests += 1
            metrics.by_agent[agent] += 1
            metrics.queue_wait_total += waited
            metrics.queue_wait_max = max(metrics.queue_wait_max, waited)
            metrics.peak_in_flight = max(metrics.peak_in_flight, self._limiter.active)
            version = self._route()
            version.in_flight += 1
            version.requests += 1
            try:
                yield version
            except BaseException as exc:
                version.errors += 1
                metrics.errors[type(exc).__name__] += 1
                raise
            finally:
                version.in_flight -= 1
                async with self._changed:
                    self._changed.notify_all()

    async def _generate(self, agent: str, request: Request) -> Completion:
        async with self._engine(agent) as version:
            self.metrics._throughput.start()
            version.throughput.start()
            tokens = 0
            try:
                completion = await version.llm.generate(request)
                tokens = completion.usage.completion_tokens
            finally:
                version.throughput.stop(tokens)
                self.metrics._throughput.stop(tokens)
            self.metrics.completed += 1
            self.metrics.prompt_tokens += completion.usage.prompt_tokens
            self.metrics.completion_tokens += tokens
            if completion.ttft_seconds is not None:
                self.metrics.ttft_total += completion.ttft_seconds
                self.metrics.ttft_count += 1
            return completion

    @asynccontextmanager
    async def _stream(self, agent: str, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        async with self._engine(agent) as version, version.llm.open_stream(request) as pieces:
            yield pieces
            self.metrics.completed += 1

    # -- ads --------------------------------------------------------------------------------
    def describe(self) -> ModelInfo:
        """What a service ad should say: the model of the most-weighted version.

        Its tokens/s are the median of the last `measure` (with its range in `speed`), or,
        before one, the busy-time throughput of that version; None until it answered.
        """
        if not self._versions:
            raise UsageError("no model version is registered")
        main = max(self._versions.values(), key=lambda v: v.weight)
        info = main.llm.info
        return ModelInfo(name=info.name, quantization=info.quantization, backend=info.backend,
                         tokens_per_second=self._speed.median if self._speed is not None
                         else main.throughput.tokens_per_second,
                         ttft_ms=self.metrics.mean_ttft_ms, context_length=info.context_length,
                         speed=self._speed)

    async def measure(self, *, max_tokens: int = 32, runs: int = 3, warmup: int = 1,
                      timeout: float | None = None) -> ModelInfo:
        """Time `runs` generations after `warmup` discarded ones, then `describe()`.

        For a node that wants a measured figure in its first ad: a cold first generation
        can be a hundred times slower than the engine's steady speed, so it is discarded,
        and the ad carries the median of the rest with their range (`Speed`). A run that
        generated nothing measurable is left out.

        Raises:
            UsageError: `runs` not positive, `warmup` negative, or no run measurable.
            LLMError: a generation failed.
        """
        if runs <= 0 or warmup < 0:
            raise UsageError(f"measure takes runs > 0 and warmup >= 0, got {runs}, {warmup}")
        handle = self.for_agent("aaex.llm.measure")
        prompt: list[ChatTurn] = [{"role": "user",
                                   "content": "Count from one to twenty in words."}]
        samples: list[float] = []
        for n in range(warmup + runs):
            done = await handle.chat(prompt, max_tokens=max_tokens, timeout=timeout)
            rate = decode_rate(done.usage.completion_tokens, done.seconds, done.ttft_seconds)
            if n >= warmup and rate is not None:
                samples.append(rate)
        self._speed = Speed.of(samples)
        return self.describe()

    # -- lifecycle --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this LLM service is closed; open a new one")

    async def aclose(self) -> None:
        """Close every registered engine. Idempotent; `open_llm_service` calls it."""
        if self._closed:
            return
        self._closed = True
        for version in self._versions.values():
            try:
                await version.llm.aclose()
            except LLMError:
                logger.warning("closing model version %s failed", version.name, exc_info=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<LLMService {state} {self._limiter!r} versions="
                f"{ {n: v.weight for n, v in self._versions.items()} }>")


class AgentLLM(LLM):
    """An agent's handle on the shared service: an `LLM` whose requests queue fairly."""

    def __init__(self, service: LLMService, agent: str) -> None:
        self._service = service
        self.agent = agent
        self.default_timeout = service.config.default_timeout

    @property
    @override
    def info(self) -> ModelInfo:
        return self._service.describe()

    @override
    async def generate(self, request: Request) -> Completion:
        return await self._service._generate(self.agent, request)

    @override
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._service._stream(self.agent, request)

    @override
    async def aclose(self) -> None:
        """A handle owns nothing; the service's opener closes the engines."""

    def __repr__(self) -> str:
        return f"<AgentLLM {self.agent} via {self._service!r}>"


@asynccontextmanager
async def open_llm_service(llm: LLM | None = None, *, version: str = "default",
                           config: LLMServiceConfig | None = None) -> AsyncIterator[LLMService]:
    """Open the node's LLM service, optionally with a first engine registered as `version`.

    The service takes ownership of `llm` (and of every engine added later) and closes them
    all when the block exits, after the block's own requests have ended.
    """
    service = LLMService(config or LLMServiceConfig())
    try:
        if llm is not None:
            service.add_version(version, llm, weight=1.0)
        yield service
    finally:
        await service.aclose()

