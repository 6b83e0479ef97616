"""The node's language model: the engine an `LLMSpec` names, opened as one shared service.

Start-up policy: an engine that cannot start (llama-cpp-python or the model file missing,
the server unreachable, vLLM absent) fails the node's start with a `ConfigError` that
names ``llm.backend`` and the field that points at the engine (``llm.model_path`` or
``llm.base_url``). It is raised from the LLM error, which stays attached as the cause. A
node that starts without its model would only fail later, inside some agent's handler.

The OpenAI-compatible server is asked for its models at start-up, although the client
itself would connect lazily: that is what turns a wrong URL or model id into a start-up
error instead of a failed request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aaex_agents.errors import LLMUnavailable, UsageError
from aaex_agents.llm import (
    LLM,
    LlamaCppConfig,
    LlamaCppLLM,
    LLMService,
    LLMServiceConfig,
    OpenAICompatLLM,
    list_models,
    open_llm_service,
    smollm2_gguf_path,
)

from ..contracts.provenance import file_sha256
from .config import ConfigError, LLMSpec

PROBE_TIMEOUT = 5.0
"""Seconds to wait for an OpenAI-compatible server's model list at start-up."""


@asynccontextmanager
async def open_node_llm(spec: LLMSpec) -> AsyncIterator[LLMService | None]:
    """Load the engine `spec` names and share it as a service; None for backend "none".

    The service owns the engine and closes it when the block exits.

    Raises:
        ConfigError: the engine cannot start; names the field to fix (see the module doc).
    """
    if spec.backend == "none":
        yield None
        return
    engine = await load_engine(spec)
    config = LLMServiceConfig(concurrency=spec.concurrency, default_timeout=spec.timeout)
    async with open_llm_service(engine, version=spec.backend, config=config) as service:
        yield service


async def load_engine(spec: LLMSpec) -> LLM:
    """The engine of `spec` (not "none"), ready to generate; the caller closes it.

    Raises:
        ConfigError: it cannot start; the message names the field and the LLM error's text.
    """
    try:
        if spec.backend == "llamacpp":
            return await LlamaCppLLM.load(LlamaCppConfig(
                model_path=spec.model_path, n_ctx=spec.n_ctx, n_threads=spec.n_threads))
        if spec.backend == "openai" and spec.base_url is not None:
            return await _connect(spec.base_url, spec.model)
        if spec.backend == "vllm" and spec.model_path is not None:
            from aaex_agents.llm.vllm import VLLMConfig, VLLMEngine

            return await VLLMEngine.load(VLLMConfig(model=spec.model_path,
                                                    max_model_len=spec.n_ctx))
    except (LLMUnavailable, UsageError) as exc:
        raise ConfigError(f"llm.backend = {spec.backend!r}, {_location(spec)}: the model "
                          f"cannot start: {exc}. Fix that field, install what is missing, "
                          "or set llm.backend = \"none\"") from exc
    # LLMSpec's checks make this unreachable (openai has a base_url, vllm a model_path).
    raise ConfigError(f"llm.backend = {spec.backend!r}: incomplete settings, {_location(spec)}")


async def _connect(base_url: str, model: str | None) -> OpenAICompatLLM:
    """A client of the server at `base_url`, checked to serve `model` (None: its first)."""
    served = await list_models(base_url, timeout=PROBE_TIMEOUT)
    if not served:
        raise LLMUnavailable(f"the server at {base_url} serves no model")
    if model is not None and model not in served:
        raise ConfigError(f"llm.model = {model!r}: the server at {base_url} serves {served}; "
                          "write one of them, or leave model out")
    return OpenAICompatLLM(base_url, model=model or served[0])


def _location(spec: LLMSpec) -> str:
    """The field that tells where the engine is, with its value."""
    if spec.backend == "openai":
        return f"llm.base_url = {spec.base_url!r}"
    if spec.model_path is None:
        return "llm.model_path absent (the shipped SmolLM2)"
    return f"llm.model_path = {str(spec.model_path)!r}"


async def model_file_hash(spec: LLMSpec) -> str | None:
    """sha256 of the model file `spec` runs (a GGUF file), hashed once, off the event loop.

    None when the model is not one file here: a server's model (``openai``) or a vLLM
    checkpoint directory; provenance then names the seller's code instead.
    """
    path: Path | None = None
    if spec.backend == "llamacpp":
        try:
            path = spec.model_path or smollm2_gguf_path()
        except LLMUnavailable:
            return None
    elif spec.backend == "vllm" and spec.model_path is not None:
        path = spec.model_path
    if path is None or not path.is_file():
        return None
    return await asyncio.to_thread(file_sha256, path)
