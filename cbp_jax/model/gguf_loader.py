"""Load a llama-architecture GGUF file (the embedded SmolLM2 default) into our params.

Tensors are dequantized with `gguf.quants.dequantize` to float32 and renamed to the
Hugging Face convention so `convert.assemble_params` applies the same strict mapping as for
safetensors folders. llama.cpp's converter permutes q/k rows so its interleaved-pair RoPE
matches HF's rotate-half RoPE; `unpermute_rope_rows` undoes it. The tokenizer is rebuilt
from the `tokenizer.ggml.*` metadata with transformers' GGUF converter (no torch).
"""

from __future__ import annotations

import pathlib
import re

import gguf
import numpy as np

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.convert import UnmappedTensorError, assemble_params
from cbp_jax.model.hf_loader import UnsupportedConfigError
from cbp_jax.model.llama import Params

_ARCH_FIELDS = {  # llama.<key> -> LlamaConfig field (None: read for checks only)
    "block_count": "num_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_heads",
    "attention.head_count_kv": "num_kv_heads",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
    "rope.dimension_count": "head_dim",
    "attention.key_length": None,
    "attention.value_length": None,
    "context_length": None,
}
_TENSOR_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def field_value(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def config_from_gguf(reader: gguf.GGUFReader, dtype: str = "float32") -> LlamaConfig:
    arch = field_value(reader, "general.architecture")
    if arch != "llama":
        raise UnsupportedConfigError(f"unsupported GGUF architecture {arch!r}; supported: 'llama'")
    values = {}
    for key in reader.fields:
        if not key.startswith("llama."):
            continue
        sub = key[len("llama.") :]
        if sub not in _ARCH_FIELDS:
            raise UnsupportedConfigError(f"unsupported GGUF config field {key!r}")
        values[sub] = field_value(reader, key)
    n_heads = int(values["attention.head_count"])
    head_dim = int(values.get("rope.dimension_count", values["embedding_length"] // n_heads))
    for sub in ("attention.key_length", "attention.value_length"):
        if sub in values and int(values[sub]) != head_dim:
            raise UnsupportedConfigError(
                f"unsupported GGUF llama.{sub}={values[sub]} != {head_dim}"
            )
    if "vocab_size" in values:
        vocab = values["vocab_size"]
    elif "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    else:
        raise UnsupportedConfigError("GGUF file states no vocabulary size (llama.vocab_size)")
    has_head = any(t.name == "output.weight" for t in reader.tensors)
    return LlamaConfig(
        vocab_size=int(vocab),
        hidden_size=int(values["embedding_length"]),
        intermediate_size=int(values["feed_forward_length"]),
        num_layers=int(values["block_count"]),
        num_heads=n_heads,
        num_kv_heads=int(values.get("attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        rope_theta=float(values.get("rope.freq_base", 10_000.0)),
        rms_norm_eps=float(values.get("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings=not has_head,
        dtype=dtype,
    )


def unpermute_rope_rows(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's q/k row permutation (interleaved pairs -> rotate-half halves)."""
    out, inp = w_OxI.shape
    return w_OxI.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match is None or match.group(2) not in _TENSOR_NAMES:
        raise UnmappedTensorError(f"unmapped GGUF tensor {gguf_name!r}")
    layer, kind, suffix = match.groups()
    return f"model.layers.{layer}.{_TENSOR_NAMES[kind]}.{suffix}"


def load_gguf(
    path: str | pathlib.Path, dtype: str = "float32"
) -> tuple[LlamaConfig, Params, gguf.GGUFReader]:
    """Config, float32 numpy params and the open reader (for the tokenizer)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    reader = gguf.GGUFReader(str(path))
    cfg = config_from_gguf(reader, dtype)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name)
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w = w.reshape(tuple(int(n) for n in reversed(t.shape)))
        if name.endswith("q_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_heads)
        elif name.endswith("k_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_kv_heads)
        tensors[name] = w
    return cfg, assemble_params(cfg, tensors), reader
