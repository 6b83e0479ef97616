"""Start a real OpenAI-compatible LLM server (llama.cpp's or vLLM's) for a test.

Readiness is polled on ``/v1/models`` with a deadline, never guessed with a sleep, and a
server that dies while starting fails the test at once with the end of its log.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aaex_agents import LLMUnavailable
from aaex_agents.llm import list_models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline_env() -> dict[str, str]:
    """The environment for servers: the model hub switched off, nothing may be downloaded."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@asynccontextmanager
async def open_server(argv: Sequence[str], port: int, log: Path, *,
                      timeout: float) -> AsyncIterator[str]:
    """Run `argv` (a server listening on 127.0.0.1:`port`); yield its URL once it lists a model.

    Leaving terminates the server and waits for it to exit (killing it after 30 s).
    """
    url = f"http://127.0.0.1:{port}"
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(*argv, stdout=sink, stderr=sink,
                                                       env=offline_env())
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.returncode is not None:
                tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-3000:]
                raise AssertionError(f"{argv[:4]} exited with {process.returncode}:\n{tail}")
            try:
                if await list_models(url, timeout=2.0):
                    break
            except LLMUnavailable:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.25)  # poll interval, not a readiness guess
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=30)
            except TimeoutError:
                process.kill()
                await process.wait()
