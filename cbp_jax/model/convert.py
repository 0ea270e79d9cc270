"""Strict conversion of Hugging Face-named tensors into the stacked, fused params pytree.

Both loaders (safetensors folders and GGUF files) and every family (Llama, Qwen2, Gemma 3)
first name every tensor the way transformers does (`model.layers.3.self_attn.q_proj.weight`,
[out, in] layout), then call `assemble_params`, which maps them into the one params tree of
`block.param_shapes` (which norms exist follows the config's fields), consumes each name
exactly once and raises on anything left over or missing. Nothing is silently dropped or
zero-filled.
"""

from __future__ import annotations

import re

import numpy as np

from cbp_jax.model.block import Params, param_shapes
from cbp_jax.model.config import DecoderConfig

_LINEAR_NAMES = [f"self_attn.{p}_proj.weight" for p in "qkvo"] + [
    f"mlp.{p}_proj.weight" for p in ("gate", "up", "down")
]
_BIAS_NAMES = {"self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"}
# Buffers some exporters write that are not parameters (recomputed from the config).
_IGNORABLE = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")


class UnsupportedConfigError(ValueError):
    """The checkpoint's config asks for something this model does not implement."""


class UnmappedTensorError(ValueError):
    """A checkpoint tensor has no place in the params pytree (or one is missing)."""


def norm_names(cfg: DecoderConfig) -> dict[str, str]:
    """HF name (after `model.layers.<i>.`) -> our name, of every per-layer norm weight."""
    names = {"input_layernorm.weight": "attn_norm"}
    if cfg.post_norms:  # Gemma: post_attention_layernorm is the attention's output norm
        names["post_attention_layernorm.weight"] = "post_attn_norm"
        names["pre_feedforward_layernorm.weight"] = "mlp_norm"
        names["post_feedforward_layernorm.weight"] = "post_mlp_norm"
    else:
        names["post_attention_layernorm.weight"] = "mlp_norm"
    if cfg.qk_norm:
        names |= {"self_attn.q_norm.weight": "q_norm", "self_attn.k_norm.weight": "k_norm"}
    return names


def assemble_params(cfg: DecoderConfig, tensors: dict[str, np.ndarray]) -> Params:
    """Build the params pytree from HF-named [out, in] arrays; strict both ways."""
    norms = norm_names(cfg)
    per_layer = {*norms, *_LINEAR_NAMES, *(_BIAS_NAMES if cfg.qkv_bias else ())}
    expected = {"model.embed_tokens.weight", "model.norm.weight"}
    expected |= {f"model.layers.{i}.{n}" for i in range(cfg.num_layers) for n in per_layer}
    if not cfg.tie_embeddings:
        expected.add("lm_head.weight")
    names = {n for n in tensors if not _IGNORABLE.fullmatch(n)}
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

    layers = {ours: layer(hf) for hf, ours in norms.items()}
    layers["w_qkv"] = np.concatenate([linear(f"self_attn.{p}_proj.weight") for p in "qkv"], 2)
    layers["w_o"] = linear("self_attn.o_proj.weight")
    layers["w_gate_up"] = np.concatenate(
        [linear("mlp.gate_proj.weight"), linear("mlp.up_proj.weight")], 2
    )
    layers["w_down"] = linear("mlp.down_proj.weight")
    if cfg.qkv_bias:
        layers["b_qkv"] = np.concatenate([layer(f"self_attn.{p}_proj.bias") for p in "qkv"], 1)
    params: Params = {
        "embed": tensors["model.embed_tokens.weight"],
        "layers": layers,
        "final_norm": tensors["model.norm.weight"],
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = tensors["lm_head.weight"].T
    check_shapes(cfg, params)
    return params


def check_shapes(cfg: DecoderConfig, params: Params) -> None:
    """Raise if any array's shape differs from what the config implies."""

    def walk(expect, got, path):
        for key, shape in expect.items():
            if isinstance(shape, dict):
                walk(shape, got[key], f"{path}{key}.")
            elif tuple(got[key].shape) != tuple(shape):
                raise UnmappedTensorError(
                    f"tensor {path}{key} has shape {tuple(got[key].shape)}, config implies {shape}"
                )

    walk(param_shapes(cfg), params, "")
