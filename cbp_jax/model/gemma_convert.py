"""Gemma 3 from a Hugging Face config: strict mapping to the decoder's config.

`config_from_hf_gemma` maps a `gemma3_text` config.json (both the older `rope_local_base_freq`
/ `rope_scaling` form and transformers 5's `rope_parameters` form) to `gemma3_config` and
raises on any field whose value we do not implement. Its tensors go through the one strict
assembly of every family (`convert.assemble_params`).
"""

from __future__ import annotations

from cbp_jax.model.config import DecoderConfig, gemma3_config, sliding_pattern
from cbp_jax.model.convert import UnsupportedConfigError

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


def config_from_hf_gemma(raw: dict, dtype: str = "float32") -> DecoderConfig:
    """Map a gemma3_text config.json dict to a Gemma 3 config; raise on anything unsupported."""
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
    return gemma3_config(
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
