"""Gemma 3 from Hugging Face names: strict config mapping and strict tensor assembly.

`config_from_hf_gemma` maps a `gemma3_text` config.json (both the older `rope_local_base_freq`
/ `rope_scaling` form and transformers 5's `rope_parameters` form) to `GemmaConfig` and raises
on any field whose value we do not implement. `assemble_gemma_params` consumes every
HF-named [out, in] tensor exactly once (the GGUF loader renames to the same names), fuses
q/k/v and gate/up, and raises on anything left over or missing.
"""

from __future__ import annotations

import re

import numpy as np

from cbp_jax.model.convert import UnmappedTensorError, UnsupportedConfigError, check_shapes_against
from cbp_jax.model.gemma import param_shapes
from cbp_jax.model.gemma_config import GemmaConfig, sliding_pattern

_BOOKKEEPING = {
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype",
    "eos_token_id", "pad_token_id", "initializer_range", "use_cache",
    "max_position_embeddings", "attention_dropout", "id2label", "label2id", "return_dict",
    "output_attentions", "output_hidden_states", "problem_type", "chunk_size_feed_forward",
    "is_encoder_decoder", "tie_encoder_decoder", "task_specific_params", "cache_implementation",
    "_sliding_window_pattern", "sliding_window_pattern", "layer_types",
}  # fmt: skip
_REQUIRED_VALUES = {
    "hidden_activation": ("gelu_pytorch_tanh",),
    "hidden_act": ("gelu_pytorch_tanh", None),
    "attention_bias": (False,),
    "use_bidirectional_attention": (False, None),
    "attn_logit_softcapping": (None,),
}
_ARCH_KEYS = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
    "tie_word_embeddings", "sliding_window", "query_pre_attn_scalar", "final_logit_softcapping",
    "rope_theta", "rope_local_base_freq", "rope_scaling",
    "rope_parameters", "bos_token_id",
}  # fmt: skip
_LAYER_NAMES = {
    "input_layernorm.weight": "input_norm",
    "self_attn.q_norm.weight": "q_norm",
    "self_attn.k_norm.weight": "k_norm",
    "post_attention_layernorm.weight": "post_attn_norm",
    "pre_feedforward_layernorm.weight": "pre_mlp_norm",
    "post_feedforward_layernorm.weight": "post_mlp_norm",
}
_LINEAR_NAMES = [f"self_attn.{p}_proj.weight" for p in "qkvo"] + [
    f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")
]
_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


def _rope(raw: dict) -> tuple[float, float, float]:
    """(global theta, local theta, global linear scaling factor) from either config form."""
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
    return float(full.get("rope_theta", 1e6)), float(local.get("rope_theta", 1e4)), factor


def config_from_hf_gemma(raw: dict, dtype: str = "float32") -> GemmaConfig:
    """Map a gemma3_text config.json dict to GemmaConfig; raise on anything unsupported."""
    if raw.get("model_type") != "gemma3_text":
        raise UnsupportedConfigError(
            f"unsupported architecture model_type={raw.get('model_type')!r}; expected "
            "'gemma3_text' (the multimodal 'gemma3' wrapper is not supported)"
        )
    for key, value in raw.items():
        if key.startswith("_name") or key in _BOOKKEEPING or key in _ARCH_KEYS:
            continue
        if key in _REQUIRED_VALUES:
            if value not in _REQUIRED_VALUES[key]:
                raise UnsupportedConfigError(f"unsupported config field {key}={value!r}")
            continue
        raise UnsupportedConfigError(f"unknown config field {key!r} (value {value!r})")
    n_layers = raw["num_hidden_layers"]
    if raw.get("layer_types"):
        allowed = {"sliding_attention", "full_attention"}
        if set(raw["layer_types"]) - allowed or len(raw["layer_types"]) != n_layers:
            raise UnsupportedConfigError(f"unsupported layer_types {raw['layer_types']}")
        sliding = tuple(t == "sliding_attention" for t in raw["layer_types"])
    else:
        sliding = sliding_pattern(n_layers, raw.get("sliding_window_pattern", 6))
    theta, local_theta, factor = _rope(raw)
    heads = raw["num_attention_heads"]
    return GemmaConfig(
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        intermediate_size=raw["intermediate_size"],
        num_layers=n_layers,
        num_heads=heads,
        num_kv_heads=raw.get("num_key_value_heads") or heads,
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
        sliding_layers=sliding,
        sliding_window=raw.get("sliding_window", 4096),
        rope_theta=theta,
        rope_local_theta=local_theta,
        rope_scaling_factor=factor,
        query_pre_attn_scalar=float(raw.get("query_pre_attn_scalar", 256)),
        rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        final_logit_softcapping=raw.get("final_logit_softcapping"),
        bos_token_id=raw.get("bos_token_id"),
        tie_embeddings=bool(raw.get("tie_word_embeddings", True)),
        dtype=dtype,
    )


def assemble_gemma_params(cfg: GemmaConfig, tensors: dict[str, np.ndarray]) -> dict:
    """Build the Gemma params pytree from HF-named [out, in] arrays; strict both ways."""
    per_layer = set(_LAYER_NAMES) | set(_LINEAR_NAMES)
    expected = {"model.embed_tokens.weight", "model.norm.weight"}
    expected |= {f"model.layers.{i}.{n}" for i in range(cfg.num_layers) for n in per_layer}
    if not cfg.tie_embeddings:
        expected.add("lm_head.weight")
    names = set(tensors)
    if cfg.tie_embeddings and "lm_head.weight" in names:
        if not np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]):
            raise UnmappedTensorError(
                "config ties the head to the embedding but lm_head.weight differs from it"
            )
        names.discard("lm_head.weight")
    if unmapped := sorted(names - expected):
        raise UnmappedTensorError(f"unmapped tensors in checkpoint: {unmapped[:8]}")
    if missing := sorted(expected - names):
        raise UnmappedTensorError(f"tensors missing from checkpoint: {missing[:8]}")

    def layer(name: str) -> np.ndarray:
        return np.stack([tensors[f"model.layers.{i}.{name}"] for i in range(cfg.num_layers)])

    def linear(name: str) -> np.ndarray:  # [L, out, in] -> [L, in, out]
        return np.swapaxes(layer(name), 1, 2)

    layers = {ours: layer(hf) for hf, ours in _LAYER_NAMES.items()}
    layers["w_qkv"] = np.concatenate([linear(f"self_attn.{p}_proj.weight") for p in "qkv"], 2)
    layers["w_o"] = linear("self_attn.o_proj.weight")
    layers["w_gate_up"] = np.concatenate(
        [linear("mlp.gate_proj.weight"), linear("mlp.up_proj.weight")], 2
    )
    layers["w_down"] = linear("mlp.down_proj.weight")
    params = {
        "embed": tensors["model.embed_tokens.weight"],
        "layers": layers,
        "final_norm": tensors["model.norm.weight"],
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = tensors["lm_head.weight"].T
    check_shapes_against(param_shapes(cfg), params)
    return params
