"""Exercise the in-process vLLM engine in its own OS process and print one JSON report.

vLLM starts child processes, so the engine is created under ``if __name__ == "__main__"``
here rather than inside the pytest process; tests/test_llm_vllm.py runs this and checks the
report. Usage: ``python -m tests.peers.vllm_engine_probe CHECKPOINT_DIR``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pydantic

from aaex_agents import LLMServiceConfig, LLMTimeout, open_llm_service
from aaex_agents.llm import LlamaCppLLM, user
from aaex_agents.llm.vllm import VLLMConfig, VLLMEngine

QUESTION = [user("What is 2+2?")]


class Capital(pydantic.BaseModel):
    country: str
    capital: str


async def probe(checkpoint: Path) -> dict[str, Any]:
    report: dict[str, Any] = {}
    started = time.monotonic()
    engine = await VLLMEngine.load(VLLMConfig(
        model=checkpoint, name="SmolLM2-135M-Instruct", quantization="Q4_1-dequantized",
        engine_options={"gpu_memory_utilization": 0.3, "enforce_eager": True}))
    report["load_seconds"] = time.monotonic() - started
    async with open_llm_service(engine, version="vllm",
                                config=LLMServiceConfig(concurrency=8)) as service:
        chat = await engine.chat(QUESTION, max_tokens=24)
        report["chat"] = {"text": chat.text, "prompt_tokens": chat.usage.prompt_tokens,
                          "completion_tokens": chat.usage.completion_tokens}
        found = await engine.complete_json(
            [user("What is the capital of France? Answer in JSON with country and capital.")],
            schema=Capital, max_tokens=64)
        report["json"] = found.model_dump()
        async with engine.stream(QUESTION, max_tokens=24) as pieces:
            report["stream"] = [piece async for piece in pieces]
        try:
            await engine.chat([user("Tell me a long story.")], max_tokens=2000, timeout=0.5)
            report["timeout"] = "no timeout"
        except LLMTimeout:
            report["timeout"] = "LLMTimeout"
        # Eight agents at once through the shared service: they must reach vLLM together.
        prompts = [user(f"Count from one to {n} in words.") for n in range(3, 11)]
        single_started = time.monotonic()
        one = await service.for_agent("solo").chat([prompts[-1]], max_tokens=48)
        single_tps = one.usage.completion_tokens / (time.monotonic() - single_started)
        batch_started = time.monotonic()
        answers = await asyncio.gather(*(service.for_agent(f"agent{i}").chat(
            [p], max_tokens=48) for i, p in enumerate(prompts)))
        batch_tps = (sum(a.usage.completion_tokens for a in answers)
                     / (time.monotonic() - batch_started))
        report["service"] = {"peak_in_flight": service.metrics.peak_in_flight,
                             "single_tokens_per_second": single_tps,
                             "batch_tokens_per_second": batch_tps,
                             "errors": dict(service.metrics.errors)}
        # A hot swap from vLLM to llama.cpp and back, under load: no request may fail.
        service.add_version("llamacpp", await LlamaCppLLM.load())
        failures: list[str] = []
        served = 0

        async def load_loop(name: str, stop: asyncio.Event) -> None:
            nonlocal served
            llm = service.for_agent(name)
            while not stop.is_set():
                try:
                    await llm.chat(QUESTION, max_tokens=8)
                    served += 1
                except Exception as exc:  # counted and reported, that is the point
                    failures.append(repr(exc))

        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            for i in range(4):
                tg.create_task(load_loop(f"swapper{i}", stop))
            await asyncio.sleep(1.0)  # let load build up on vLLM before swapping
            in_flight_at_swap = service.versions["vllm"].in_flight
            await service.swap("llamacpp")
            drained = service.versions["vllm"].in_flight
            await asyncio.sleep(1.0)
            await service.rollback()
            stop.set()
        report["swap"] = {"failures": failures, "served": served,
                          "vllm_in_flight_at_swap": in_flight_at_swap,
                          "vllm_in_flight_after_swap": drained,
                          "llamacpp_requests": service.versions["llamacpp"].requests}
        report["describe"] = service.describe().__dict__
    return report


def main() -> None:
    report = asyncio.run(probe(Path(sys.argv[1])))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
