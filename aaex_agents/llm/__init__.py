"""The node's local language model: one interface, several engines, one shared service.

Layout: the interface (`base`), engines (`llamacpp` on CPU, `openai_compat` for a
``vllm serve`` or llama.cpp server, `vllm` in-process), the shared service with fair
queueing and model versions (`service`, `fair`), and the GGUF to Hugging Face converter
that lets vLLM run the CPU model (`gguf_convert`).
"""

from .base import LLM, ChatTurn, Completion, ModelInfo, Request, Usage, system, user
from .llamacpp import LlamaCppConfig, LlamaCppLLM, smollm2_gguf_path
from .openai_compat import OpenAICompatLLM, RetryPolicy, list_models, wait_until_ready
from .service import (
    AgentLLM,
    LLMMetrics,
    LLMService,
    LLMServiceConfig,
    ModelVersion,
    open_llm_service,
)

__all__ = [
    "LLM",
    "AgentLLM",
    "ChatTurn",
    "Completion",
    "LLMMetrics",
    "LLMService",
    "LLMServiceConfig",
    "LlamaCppConfig",
    "LlamaCppLLM",
    "ModelInfo",
    "ModelVersion",
    "OpenAICompatLLM",
    "Request",
    "RetryPolicy",
    "Usage",
    "list_models",
    "open_llm_service",
    "smollm2_gguf_path",
    "system",
    "user",
    "wait_until_ready",
]
