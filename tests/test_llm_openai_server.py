"""The OpenAI-compatible client against llama.cpp's real server on loopback."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pydantic
import pytest

from aaex_agents import LLMRequestFailed, LLMUnavailable
from aaex_agents.llm import OpenAICompatLLM, RetryPolicy, user
from tests.peers.llm_servers import free_port, open_server

pytest.importorskip("llama_cpp.server.app", reason="llama.cpp's server needs the cpu extra: "
                    "pip install '.[cpu,dev]' (the README's test command does)")

from aaex_agents.llm import smollm2_gguf_path

QUESTION = [user("What is 2+2?")]
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2)


class Capital(pydantic.BaseModel):
    country: str
    capital: str


@asynccontextmanager
async def llama_server(port: int, log: Path) -> AsyncIterator[str]:
    """`python -m llama_cpp.server` with the CPU model on 127.0.0.1:`port`, ready on entry."""
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1"]
    async with open_server(argv, port, log, timeout=90) as url:
        yield url


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[OpenAICompatLLM]:
    async with llama_server(free_port(), tmp_path / "server.log") as url:
        llm = await OpenAICompatLLM.connect(url, schema_style="json_object", quantization="Q4_1",
                                            retry=FAST_RETRY)
        try:
            yield llm
        finally:
            await llm.aclose()


async def test_completion_with_usage(client: OpenAICompatLLM) -> None:
    completion = await client.chat(QUESTION, max_tokens=24)
    assert "4" in completion.text
    assert completion.usage.prompt_tokens > 10 and completion.usage.completion_tokens > 0
    assert client.info.name.endswith(".gguf") and client.info.quantization == "Q4_1"


async def test_streaming_over_sse(client: OpenAICompatLLM) -> None:
    whole = await client.chat(QUESTION, max_tokens=16)
    async with client.stream(QUESTION, max_tokens=16) as pieces:
        parts = [piece async for piece in pieces]
    assert len(parts) > 1
    assert "".join(parts) == whole.text


async def test_schema_constrained_json(client: OpenAICompatLLM) -> None:
    answer = await client.complete_json(
        [user("What is the capital of France? Answer in JSON with country and capital.")],
        schema=Capital, max_tokens=64)
    assert answer.capital.lower() == "paris"


async def test_server_down_is_a_clear_error_and_a_restart_recovers(tmp_path: Path) -> None:
    port = free_port()
    async with llama_server(port, tmp_path / "server.log") as url:
        llm = await OpenAICompatLLM.connect(url, retry=FAST_RETRY)
        first = await llm.chat(QUESTION, max_tokens=8)
    try:
        with pytest.raises(LLMUnavailable, match=f"127.0.0.1:{port}/v1/chat/completions"):
            await llm.chat(QUESTION, max_tokens=8)
        async with llama_server(port, tmp_path / "server.log"):
            again = await llm.chat(QUESTION, max_tokens=8)  # the same client, no reopening
        assert again.text == first.text
    finally:
        await llm.aclose()


async def test_nothing_listening_at_all() -> None:
    llm = OpenAICompatLLM(f"http://127.0.0.1:{free_port()}", model="none", retry=FAST_RETRY)
    try:
        with pytest.raises(LLMUnavailable, match="after 3 attempts"):
            await llm.chat(QUESTION)
    finally:
        await llm.aclose()


@asynccontextmanager
async def flaky_server_double(failures: int, status: int) -> AsyncIterator[tuple[str, list[int]]]:
    """Test double for fault injection: answers `status` `failures` times, then a canned
    OpenAI-style completion. Yields its URL and the statuses it sent."""
    from aiohttp import web

    sent: list[int] = []

    async def completions(request: web.Request) -> web.Response:
        if len(sent) < failures:
            sent.append(status)
            return web.Response(status=status, text="injected fault")
        sent.append(200)
        return web.json_response({"model": "double", "choices": [
            {"message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1}})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", sent
    finally:
        await runner.cleanup()


async def test_5xx_answers_are_retried_with_backoff() -> None:
    async with flaky_server_double(failures=2, status=503) as (url, sent):
        llm = OpenAICompatLLM(url, model="double", retry=FAST_RETRY)
        try:
            completion = await llm.chat(QUESTION)
        finally:
            await llm.aclose()
    assert completion.text == "4" and sent == [503, 503, 200]


async def test_persistent_5xx_and_4xx_are_clear_errors() -> None:
    async with flaky_server_double(failures=10, status=500) as (url, sent):
        llm = OpenAICompatLLM(url, model="double", retry=FAST_RETRY)
        try:
            with pytest.raises(LLMRequestFailed, match=r"answered 500.*after 3 attempts"):
                await llm.chat(QUESTION)
        finally:
            await llm.aclose()
    assert sent == [500, 500, 500]
    async with flaky_server_double(failures=10, status=400) as (url, sent):
        llm = OpenAICompatLLM(url, model="double", retry=FAST_RETRY)
        try:
            with pytest.raises(LLMRequestFailed, match="refused the request with 400"):
                await llm.chat(QUESTION)
        finally:
            await llm.aclose()
    assert sent == [400]  # a 4xx is our fault: not retried
