"""Load a Hugging Face checkpoint folder (config.json + safetensors, single or sharded).

Strict: an architecture other than Llama/Qwen2/Gemma 3 text, a config field whose value we do not
implement (RoPE scaling, sliding windows, MLP bias, ...), an unknown config key, or an
unmapped tensor raises with the offending name. Reads tensors with safetensors' numpy
backend (bfloat16 via ml_dtypes); no torch, no network.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from safetensors import safe_open

from cbp_jax.model.block import Params
from cbp_jax.model.config import DecoderConfig
from cbp_jax.model.convert import (
    UnsupportedConfigError,  # noqa: F401 (re-exported)
    assemble_params,
)
from cbp_jax.model.gemma_convert import config_from_hf_gemma

SUPPORTED_TYPES = ("llama", "qwen2")
# Keys that carry no architecture (bookkeeping, generation defaults, HF training flags).
_BOOKKEEPING = {
    "architectures",
    "model_type",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "use_cache",
    "max_position_embeddings",
    "attention_dropout",
    "id2label",
    "label2id",
    "return_dict",
    "output_attentions",
    "output_hidden_states",
    "problem_type",
    "chunk_size_feed_forward",
    "is_encoder_decoder",
    "tie_encoder_decoder",
    "max_window_layers",
    "task_specific_params",
}
# Keys that must hold exactly these values (anything else is unsupported).
_REQUIRED_VALUES = {
    "hidden_act": ("silu",),
    "mlp_bias": (False,),
    "pretraining_tp": (1,),
    "use_sliding_window": (False,),
    "sliding_window": (None,),
    "rope_scaling": (None,),
}
_ARCH_KEYS = {
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "rope_theta",
    "rope_parameters",
    "rms_norm_eps",
    "tie_word_embeddings",
    "attention_bias",
    "layer_types",
}


def config_from_hf(raw: dict, dtype: str = "float32") -> DecoderConfig:
    """Map a llama/qwen2 config.json dict to DecoderConfig; raise on anything unsupported."""
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise UnsupportedConfigError(
            f"unsupported architecture model_type={model_type!r}; supported: "
            f"{(*SUPPORTED_TYPES, 'gemma3_text')}"
        )
    for key, value in raw.items():
        if key.startswith("_") or key in _BOOKKEEPING or key in _ARCH_KEYS:
            continue
        if key in _REQUIRED_VALUES:
            if (
                model_type == "qwen2"
                and key == "sliding_window"
                and not raw.get("use_sliding_window")
            ):
                continue  # Qwen2 stores a window size even when sliding windows are off
            if value not in _REQUIRED_VALUES[key]:
                raise UnsupportedConfigError(f"unsupported config field {key}={value!r}")
            continue
        raise UnsupportedConfigError(f"unknown config field {key!r} (value {value!r})")
    rope = raw.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default" or set(rope) - {"rope_type", "rope_theta"}:
        raise UnsupportedConfigError(f"unsupported rope_parameters {rope}")
    if any(t != "full_attention" for t in raw.get("layer_types") or []):
        raise UnsupportedConfigError(f"unsupported layer_types {raw['layer_types']}")
    attention_bias = raw.get("attention_bias", model_type == "qwen2")
    if model_type == "llama" and attention_bias:
        raise UnsupportedConfigError("unsupported config field attention_bias=True for llama")
    heads = raw["num_attention_heads"]
    return DecoderConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_layers=raw["num_hidden_layers"],
        num_heads=heads,
        num_kv_heads=raw.get("num_key_value_heads") or heads,
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10_000.0))),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2",
        dtype=dtype,
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
    raw = json.loads(config_file.read_text())
    gemma = raw.get("model_type") == "gemma3_text"
    cfg = config_from_hf_gemma(raw, dtype=dtype) if gemma else config_from_hf(raw, dtype=dtype)
    tensors = read_safetensors(_safetensor_files(folder))
    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()}
    return cfg, assemble_params(cfg, tensors)
