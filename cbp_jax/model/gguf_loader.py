"""Load a GGUF file (llama, qwen2 or gemma3 architecture) into our params.

Tensors are dequantized to float32 (`dequant.dequantize_tensor`, tested types only) and
renamed to the Hugging Face convention so the same strict assembly applies as for
safetensors folders. llama.cpp's converter permutes q/k rows of `llama` models so its
interleaved-pair RoPE matches HF's rotate-half RoPE; `unpermute_rope_rows` undoes it. Qwen2
(q/k/v biases) and Gemma 3 use NEOX-style RoPE and are not permuted. Gemma 3's config, extra
tensor names and norm shift are in `gguf_gemma`; every family's tensors then go through the
one strict assembly (`convert.assemble_params`). The tokenizer is rebuilt from the
`tokenizer.ggml.*` metadata with transformers' GGUF converter (no torch).
"""

from __future__ import annotations

import pathlib
import re

import gguf
import numpy as np

from cbp_jax.model.config import DecoderConfig
from cbp_jax.model.convert import UnmappedTensorError, UnsupportedConfigError, assemble_params
from cbp_jax.model.dequant import dequantize_tensor
from cbp_jax.model.gguf_gemma import NORM_SHIFT, TENSOR_NAMES, config_from_gguf_gemma

SUPPORTED_ARCHS = ("llama", "qwen2", "gemma3")
_ARCH_FIELDS = {  # <arch>.<key> -> DecoderConfig field (None: read for checks only)
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
_BIASES = {"attn_q", "attn_k", "attn_v"}  # qwen2 only
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


def field_value(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def config_from_gguf(reader: gguf.GGUFReader, dtype: str = "float32") -> DecoderConfig:
    """DecoderConfig of a llama or qwen2 GGUF (gemma3: `gguf_gemma.config_from_gguf_gemma`)."""
    arch = field_value(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise UnsupportedConfigError(
            f"unsupported GGUF architecture {arch!r}; supported: {SUPPORTED_ARCHS}"
        )
    values = {}
    for key in reader.fields:
        if not key.startswith(f"{arch}."):
            continue
        sub = key[len(arch) + 1 :]
        if sub not in _ARCH_FIELDS:
            raise UnsupportedConfigError(f"unsupported GGUF config field {key!r}")
        values[sub] = field_value(reader, key)
    n_heads = int(values["attention.head_count"])
    head_dim = int(values.get("rope.dimension_count", values["embedding_length"] // n_heads))
    for sub in ("attention.key_length", "attention.value_length"):
        if sub in values and int(values[sub]) != head_dim:
            raise UnsupportedConfigError(
                f"unsupported GGUF {arch}.{sub}={values[sub]} != {head_dim}"
            )
    if "vocab_size" in values:
        vocab = values["vocab_size"]
    elif "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    else:
        raise UnsupportedConfigError(f"GGUF file states no vocabulary size ({arch}.vocab_size)")
    has_head = any(t.name == "output.weight" for t in reader.tensors)
    return DecoderConfig(
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
        qkv_bias=arch == "qwen2",
        dtype=dtype,
    )


def unpermute_rope_rows(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's q/k row permutation (interleaved pairs -> rotate-half halves)."""
    out, inp = w_OxI.shape
    return w_OxI.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def hf_name(gguf_name: str, arch: str = "llama") -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    names = _TENSOR_NAMES | TENSOR_NAMES if arch == "gemma3" else _TENSOR_NAMES
    match = _BLOCK.fullmatch(gguf_name)
    if match is None or match.group(2) not in names:
        raise UnmappedTensorError(f"unmapped GGUF tensor {gguf_name!r}")
    layer, kind, suffix = match.groups()
    if suffix == "bias" and kind not in _BIASES:
        raise UnmappedTensorError(f"unmapped GGUF tensor {gguf_name!r}")
    return f"model.layers.{layer}.{names[kind]}.{suffix}"


def load_gguf(path: str | pathlib.Path, dtype: str = "float32"):
    """Config, float32 numpy params and the open reader (for the tokenizer)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no GGUF file at {path}")
    reader = gguf.GGUFReader(str(path))
    arch = field_value(reader, "general.architecture")
    gemma = arch == "gemma3"
    cfg = config_from_gguf_gemma(reader, dtype) if gemma else config_from_gguf(reader, dtype)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name, arch)
        w = dequantize_tensor(t)
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_kv_heads)
        elif gemma and name.endswith("norm.weight"):
            w = w - NORM_SHIFT
        tensors[name] = w
    return cfg, assemble_params(cfg, tensors), reader
