"""Load a Hugging Face checkpoint folder (config.json + safetensors, single or sharded).

Strict: an architecture other than Llama/Qwen2/Gemma 3 text, a config field whose value we do
not implement (RoPE scaling, sliding windows, MLP bias, ...), an unknown config key, or an
unmapped tensor raises with the offending name. `config_from_hf` maps every family (Gemma 3,
in both the older `rope_local_base_freq` / `rope_scaling` and transformers 5's
`rope_parameters` form, to the `gemma3_config` preset); tensors go through the one strict
assembly (`convert.assemble_params`), read with safetensors' numpy backend (bfloat16 via
ml_dtypes); no torch, no network.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from safetensors import safe_open
from transformers import AutoTokenizer

from cbp_jax.model.block import Params
from cbp_jax.model.config import DecoderConfig, gemma3_config, sliding_pattern
from cbp_jax.model.convert import (
    UnsupportedConfigError,  # noqa: F401 (re-exported)
    assemble_params,
)

GEMMA = "gemma3_text"
# Keys of every family that carry no architecture (bookkeeping, generation defaults, HF
# training flags) or that every family maps the same way.
_ACCEPTED = {
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype",
    "eos_token_id", "pad_token_id", "initializer_range", "use_cache",
    "max_position_embeddings", "attention_dropout", "id2label", "label2id", "return_dict",
    "output_attentions", "output_hidden_states", "problem_type", "chunk_size_feed_forward",
    "is_encoder_decoder", "tie_encoder_decoder", "task_specific_params",
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rope_theta", "rope_parameters",
    "rms_norm_eps", "tie_word_embeddings", "layer_types", "bos_token_id",
}  # fmt: skip
_LLAMA = (  # further accepted keys; keys that must hold one of these values
    {"max_window_layers", "attention_bias"},
    {"hidden_act": ("silu",), "mlp_bias": (False,), "pretraining_tp": (1,),
     "use_sliding_window": (False,), "sliding_window": (None,), "rope_scaling": (None,)},
)  # fmt: skip
_GEMMA3 = (
    {"cache_implementation", "sliding_window_pattern", "sliding_window", "rope_scaling",
     "query_pre_attn_scalar", "final_logit_softcapping", "rope_local_base_freq"},
    {"hidden_activation": ("gelu_pytorch_tanh",), "hidden_act": ("gelu_pytorch_tanh", None),
     "attention_bias": (False,), "use_bidirectional_attention": (False, None),
     "attn_logit_softcapping": (None,)},
)  # fmt: skip
_FAMILIES = {"llama": _LLAMA, "qwen2": _LLAMA, GEMMA: _GEMMA3}


def config_from_hf(raw: dict, dtype: str = "float32") -> DecoderConfig:
    """Map a llama, qwen2 or gemma3_text config.json dict to DecoderConfig (Gemma 3: the
    `gemma3_config` preset); raise on anything unsupported."""
    model_type = raw.get("model_type")
    if model_type not in _FAMILIES:
        raise UnsupportedConfigError(
            f"unsupported architecture model_type={model_type!r}; supported: "
            f"{tuple(_FAMILIES)} (not the multimodal 'gemma3' wrapper)"
        )
    accepted, required = _FAMILIES[model_type]
    for key, value in raw.items():
        if key.startswith("_") or key in _ACCEPTED or key in accepted:
            continue
        if key not in required:
            raise UnsupportedConfigError(f"unknown config field {key!r} (value {value!r})")
        # Qwen2 stores a window size even when sliding windows are off.
        qwen2_window = model_type == "qwen2" and key == "sliding_window"
        if value not in required[key] and not (qwen2_window and not raw.get("use_sliding_window")):
            raise UnsupportedConfigError(f"unsupported config field {key}={value!r}")
    heads = raw["num_attention_heads"]
    shared = dict(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_layers=raw["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=raw.get("num_key_value_heads") or heads,
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(raw.get("tie_word_embeddings", model_type == GEMMA)),
        dtype=dtype,
    )
    if model_type == GEMMA:
        return _gemma3_config(raw, shared)
    rope = raw.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default" or set(rope) - {"rope_type", "rope_theta"}:
        raise UnsupportedConfigError(f"unsupported rope_parameters {rope}")
    if any(t != "full_attention" for t in raw.get("layer_types") or []):
        raise UnsupportedConfigError(f"unsupported layer_types {raw['layer_types']}")
    if model_type == "llama" and raw.get("attention_bias", False):
        raise UnsupportedConfigError("unsupported config field attention_bias=True for llama")
    return DecoderConfig(
        **shared,
        rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10_000.0))),
        qkv_bias=model_type == "qwen2",
    )


def _gemma3_config(raw: dict, shared: dict) -> DecoderConfig:
    """Gemma 3's fields: sliding layers, both RoPE bases and scaling, scale, soft-cap, BOS."""
    n_layers = raw["num_hidden_layers"]
    if raw.get("layer_types"):
        allowed = {"sliding_attention", "full_attention"}
        if set(raw["layer_types"]) - allowed or len(raw["layer_types"]) != n_layers:
            raise UnsupportedConfigError(f"unsupported layer_types {raw['layer_types']}")
        sliding = tuple(t == "sliding_attention" for t in raw["layer_types"])
    else:
        sliding = sliding_pattern(n_layers, raw.get("sliding_window_pattern", 6))
    params = raw.get("rope_parameters")
    if params and "full_attention" in params:
        full, local = params["full_attention"], params.get("sliding_attention") or {}
    else:
        full = dict(raw.get("rope_scaling") or {}, rope_theta=raw.get("rope_theta", 1e6))
        local = {"rope_theta": raw.get("rope_local_base_freq", 10_000.0)}
    factor = 1.0
    kind = full.get("rope_type", full.get("type", "default"))
    if kind == "linear":
        factor = float(full["factor"])
    elif kind != "default":
        raise UnsupportedConfigError(f"unsupported rope type {kind!r} for global layers")
    extra = set(full) - {"rope_type", "type", "rope_theta", "factor"}
    if extra or local.get("rope_type", "default") != "default":
        raise UnsupportedConfigError(f"unsupported rope parameters {full} / {local}")
    return gemma3_config(
        **shared,
        sliding_layers=sliding,
        sliding_window=raw.get("sliding_window", 4096),
        rope_theta=float(full.get("rope_theta", 1e6)),
        rope_local_theta=float(local.get("rope_theta", 1e4)),
        rope_scaling_factor=factor,
        query_pre_attn_scalar=float(raw.get("query_pre_attn_scalar", 256)),
        final_logit_softcapping=raw.get("final_logit_softcapping"),
        bos_token_id=raw.get("bos_token_id"),
    )


def _safetensor_files(folder: pathlib.Path) -> list[pathlib.Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / s for s in shards]
    else:
        files = [folder / "model.safetensors"]
    for f in files:
        if not f.exists():
            raise FileNotFoundError(f"missing weights file {f}")
    return files


def read_safetensors(files: list[pathlib.Path]) -> dict[str, np.ndarray]:
    tensors = {}
    for f in files:
        with safe_open(str(f), framework="numpy") as fh:
            for name in fh.keys():
                tensors[name] = fh.get_tensor(name)
    return tensors


def load_hf_folder(
    path: str | pathlib.Path, dtype: str = "float32"
) -> tuple[DecoderConfig, Params]:
    """Config and params (numpy, float32) from a Hugging Face folder (any family)."""
    folder = pathlib.Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no checkpoint folder at {folder}")
    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"missing {config_file}")
    cfg = config_from_hf(json.loads(config_file.read_text()), dtype=dtype)
    tensors = read_safetensors(_safetensor_files(folder))
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
    return cfg, assemble_params(cfg, tensors)


def tokenizer_from_folder(folder: str | pathlib.Path):
    """The folder's own tokenizer files via `AutoTokenizer` (local only)."""
    folder = pathlib.Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json) in {folder}")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
