"""Load a GGUF file (llama, qwen2 or gemma3 architecture) into our params.

Tensors are dequantized to float32 by `dequantize_tensor`, which accepts only the block
types the packaged models and common Qwen2.5 / Gemma GGUFs use and tests/test_qwen2_gguf.py
checks (anything else raises `UnsupportedQuantError` naming the tensor and its type), and
renamed to the Hugging Face convention for the one strict assembly of safetensors folders
too (`convert.assemble_params`). One `config_from_gguf` maps every architecture, Gemma 3's
differences to the `gemma3_config` preset. The tokenizer is rebuilt from the
`tokenizer.ggml.*` metadata with transformers' GGUF converter (no torch).

Family facts this follows (transformers' GGUF loader, llama.cpp's converter): llama.cpp
permutes the q/k rows of `llama` models for its interleaved-pair RoPE (`unpermute_rope_rows`
undoes it; Qwen2 and Gemma 3 use NEOX-style RoPE, not permuted); it adds 1 to every Gemma
RMSNorm weight, which transformers' `Gemma2TensorProcessor` (and `NORM_SHIFT` here) subtracts
again. A gemma3 file states neither the local/global layout nor the attention scale:
llama.cpp hard-codes every 6th layer global and 1 / sqrt(head_dim) (1 / sqrt(hidden / heads)
for the 62-layer 27B), as transformers' defaults do; the local RoPE base is 10k unless
`rope.freq_base_swa` says otherwise.
"""

from __future__ import annotations

import pathlib
import re

import gguf
import numpy as np
from transformers import PreTrainedTokenizerFast

try:  # transformers >= 5.2x; earlier 5.x releases keep it in integrations.ggml
    from transformers.integrations.gguf import convert_gguf_tokenizer
except ImportError:  # pragma: no cover - depends on the installed transformers
    from transformers.integrations.ggml import convert_gguf_tokenizer

from cbp_jax.model.config import DecoderConfig, gemma3_config, sliding_pattern
from cbp_jax.model.convert import UnmappedTensorError, UnsupportedConfigError, assemble_params

Q = gguf.GGMLQuantizationType
SUPPORTED = (Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)
SUPPORTED_ARCHS = ("llama", "qwen2", "gemma3")
_FIELDS = {  # <arch>.<key> every architecture may state
    "context_length", "embedding_length", "block_count", "feed_forward_length",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
    "attention.key_length", "attention.value_length", "rope.freq_base",
    "rope.dimension_count", "vocab_size",
}  # fmt: skip
_GEMMA_FIELDS = _FIELDS | {
    "attention.sliding_window", "rope.freq_base_swa", "rope.scaling.type",
    "rope.scaling.factor", "final_logit_softcapping",
}  # fmt: skip
_TENSOR_NAMES = {  # GGUF block tensor -> HF name (after model.layers.<i>.)
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}  # fmt: skip
_GEMMA_NAMES = _TENSOR_NAMES | {  # where gemma3's HF names differ from the llama arch's
    "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm", "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}  # fmt: skip
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BIASES = {"attn_q", "attn_k", "attn_v"}  # qwen2 only
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")
_GGUF_TOKENIZER_KEYS = {  # tokenizer.ggml.<key> -> converter's name
    "model": "tokenizer_type", "pre": "pre_tokenizer_type", "tokens": "tokens",
    "scores": "scores", "token_type": "token_type", "merges": "merges",
    "bos_token_id": "bos_token_id", "eos_token_id": "eos_token_id",
    "unknown_token_id": "unk_token_id", "padding_token_id": "pad_token_id",
    "add_space_prefix": "add_prefix_space",
}  # fmt: skip
NORM_SHIFT = 1.0  # subtracted from every gemma3 norm weight
GLOBAL_EVERY = 6  # gemma3: every 6th layer is global


class UnsupportedQuantError(ValueError):
    """A GGUF tensor is stored in a quantization type we do not decode."""


def dequantize_tensor(tensor) -> np.ndarray:
    """A `GGUFReader` tensor as float32 in row-major [out, in] (HF) order."""
    kind = tensor.tensor_type
    if kind not in SUPPORTED:
        name = getattr(kind, "name", str(kind))
        raise UnsupportedQuantError(
            f"GGUF tensor {tensor.name!r} has unsupported quantization type {name}; "
            f"supported: {[t.name for t in SUPPORTED]}"
        )
    w = gguf.quants.dequantize(tensor.data, kind).astype(np.float32, copy=False)
    return w.reshape(tuple(int(n) for n in reversed(tensor.shape)))


def field_value(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def config_from_gguf(reader: gguf.GGUFReader, dtype: str = "float32") -> DecoderConfig:
    """DecoderConfig of a llama, qwen2 or gemma3 GGUF; raise on any field we do not implement."""
    arch = field_value(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedConfigError(
            f"unsupported GGUF architecture {arch!r}; supported: {SUPPORTED_ARCHS}"
        )
    gemma = arch == "gemma3"
    values = {}
    for key in reader.fields:
        if not key.startswith(f"{arch}."):
            continue
        sub = key[len(arch) + 1 :]
        if sub not in (_GEMMA_FIELDS if gemma else _FIELDS):
            raise UnsupportedConfigError(f"unsupported GGUF config field {key!r}")
        values[sub] = field_value(reader, key)
    d, n_layers = int(values["embedding_length"]), int(values["block_count"])
    n_heads = int(values["attention.head_count"])
    head_key = "attention.key_length" if gemma else "rope.dimension_count"
    head_dim = int(values.get(head_key, d // n_heads))
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
    shared = dict(
        vocab_size=int(vocab),
        hidden_size=d,
        intermediate_size=int(values["feed_forward_length"]),
        num_layers=n_layers,
        num_heads=n_heads,
        num_kv_heads=int(values.get("attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        rope_theta=float(values.get("rope.freq_base", 1_000_000.0 if gemma else 10_000.0)),
        rms_norm_eps=float(values.get("attention.layer_norm_rms_epsilon", 1e-6 if gemma else 1e-5)),
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
        dtype=dtype,
    )
    if not gemma:
        return DecoderConfig(**shared, qkv_bias=arch == "qwen2")
    factor = 1.0
    if "rope.scaling.type" in values:
        if values["rope.scaling.type"] not in ("linear", "none"):
            raise UnsupportedConfigError(
                f"unsupported GGUF gemma3.rope.scaling.type={values['rope.scaling.type']!r}"
            )
        factor = float(values.get("rope.scaling.factor", 1.0))
    bos = None
    add_bos = reader.fields.get("tokenizer.ggml.add_bos_token")
    if (
        add_bos is not None
        and add_bos.contents()
        and "tokenizer.ggml.bos_token_id" in reader.fields
    ):
        bos = int(field_value(reader, "tokenizer.ggml.bos_token_id"))
    cap = values.get("final_logit_softcapping")
    return gemma3_config(
        **shared,
        sliding_layers=sliding_pattern(n_layers, GLOBAL_EVERY),
        sliding_window=int(values.get("attention.sliding_window", 4096)),
        rope_local_theta=float(values.get("rope.freq_base_swa", 10_000.0)),
        rope_scaling_factor=factor,
        query_pre_attn_scalar=float(d / n_heads if n_layers == 62 else head_dim),  # llama.cpp's
        final_logit_softcapping=None if cap is None else float(cap),
        bos_token_id=bos,
    )


def unpermute_rope_rows(w_OxI: np.ndarray, n_heads: int) -> np.ndarray:
    """Invert llama.cpp's q/k row permutation (interleaved pairs -> rotate-half halves)."""
    out, inp = w_OxI.shape
    return w_OxI.reshape(n_heads, out // n_heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)


def hf_name(gguf_name: str, arch: str = "llama") -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    names = _GEMMA_NAMES if arch == "gemma3" else _TENSOR_NAMES
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
    cfg = config_from_gguf(reader, dtype)
    tensors = {}
    for t in reader.tensors:
        name = hf_name(t.name, arch)
        w = dequantize_tensor(t)
        if arch == "llama" and name.endswith("q_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            w = unpermute_rope_rows(w, cfg.num_kv_heads)
        elif arch == "gemma3" and name.endswith("norm.weight"):
            w = w - NORM_SHIFT
        tensors[name] = w
    return cfg, assemble_params(cfg, tensors), reader


def tokenizer_from_gguf(reader: gguf.GGUFReader) -> PreTrainedTokenizerFast:
    """The `tokenizer.ggml.*` metadata through transformers' GGUF converter, as a fast tokenizer."""
    info = {}
    for key, name in _GGUF_TOKENIZER_KEYS.items():
        field = reader.fields.get(f"tokenizer.ggml.{key}")
        if field is not None:
            info[name] = field.contents()
    if "tokens" not in info:
        raise ValueError("GGUF file has no tokenizer.ggml.tokens metadata")
    arch = reader.fields["general.architecture"].contents()
    backend, _ = convert_gguf_tokenizer(arch, info)
    tokens = info["tokens"]

    def special(key):
        return tokens[info[key]] if key in info else None

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=special("bos_token_id"),
        eos_token=special("eos_token_id"),
        unk_token=special("unk_token_id"),
        pad_token=special("pad_token_id"),
    )
