"""Pure functional forward pass of a Llama-family decoder (Llama, SmolLM2, Qwen2).

Shape suffixes: B batch, S text length, T prompt length, P = T + S full sequence,
D hidden, H query heads, K key/value heads, G = H / K, E head dim, F MLP width,
V vocabulary, C candidate answer tokens, L layers.

Numerics: the residual stream, norms, RoPE and softmax run in float32; matmul inputs are
cast to cfg.dtype (float32 or bfloat16) with float32 accumulation.

Params are a plain dict (see `param_shapes`); decoder blocks are stacked on a leading L
axis and run under `lax.scan`. q/k/v and gate/up projections are stored fused so each is one
matmul. Only what is asked is computed: by default the head runs at one answer position per
example, optionally restricted to candidate token ids, which removes the V x D head from
every other position (the largest single waste in prompt scoring).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.input_checks import validate_inputs
from cbp_jax.model.mixed_dot import dense, head_product, mixed_einsum

Params = dict[str, Any]


class ModelOutput(NamedTuple):
    """What `forward` returns; fields not asked for are None.

    logits: B x C or B x V at the answer positions, or B x S x V with `full_logits=True`.
    hidden_BxSxD: final (normalised) hidden states at the text positions.
    pooled_BxD: mean of the input token embeddings over non-padding text tokens.
    """

    logits: jax.Array | None
    hidden_BxSxD: jax.Array | None = None
    pooled_BxD: jax.Array | None = None


def param_shapes(cfg: LlamaConfig) -> dict[str, Any]:
    """Shape of every parameter, as a nested dict mirroring the params pytree."""
    d, e, f, n_l = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size, cfg.num_layers
    qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * e
    layers = {
        "attn_norm": (n_l, d),
        "w_qkv": (n_l, d, qkv),
        "w_o": (n_l, cfg.num_heads * e, d),
        "mlp_norm": (n_l, d),
        "w_gate_up": (n_l, d, 2 * f),
        "w_down": (n_l, f, d),
    }
    if cfg.qkv_bias:
        layers["b_qkv"] = (n_l, qkv)
    shapes = {"embed": (cfg.vocab_size, d), "layers": layers, "final_norm": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head"] = (d, cfg.vocab_size)
    return shapes


def rms_norm(x, weight, eps):
    """RMSNorm, computed and returned in float32."""
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return weight.astype(jnp.float32) * x32


def rope_tables(positions_BxP, theta, head_dim):
    """cos and sin of the rotary angles, B x P x 1 x E in float32 (computed once per forward)."""
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = positions_BxP[..., None].astype(jnp.float32) * inv_freq  # B x P x E/2
    angles = jnp.concatenate([angles, angles], -1)[:, :, None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_BxPxNxE, cos_BxPx1xE, sin_BxPx1xE):
    """Rotary embedding, rotate-half layout (HF Llama), in float32, from `rope_tables`."""
    x = x_BxPxNxE.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x * cos_BxPx1xE + jnp.concatenate([-x2, x1], axis=-1) * sin_BxPx1xE


def rope(x_BxPxNxE, positions_BxP, theta):
    """Rotary embedding at `positions_BxP` (tables built on the spot), in float32."""
    cos, sin = rope_tables(positions_BxP, theta, x_BxPxNxE.shape[-1])
    return apply_rope(x_BxPxNxE, cos, sin)


def mask_bias(allowed_BxPxS):
    """Additive attention bias, B x 1 x 1 x P x S: 0 where allowed, else the float32 minimum."""
    return jnp.where(allowed_BxPxS, 0.0, jnp.finfo(jnp.float32).min)[:, None, None]


def attention(q_BxPxHxE, k_BxSxKxE, v_BxSxKxE, bias_Bx1x1xPxS, dtype):
    """Grouped-query softmax attention -> B x P x (H*E), float32 out.

    q must already carry the 1/sqrt(E) scale. The G = H / K query heads of a key/value head
    are stacked along the query axis (B x K x G*P x E) so that both products are plain
    batched matmuls over (B, K) with bf16 inputs and float32 accumulation: on XLA's CPU
    backend this layout ran the attention ~1.3x faster than contracting the 5-D einsum
    directly (experiments/results/precision.md). Scores and softmax stay in float32.
    """
    b, p, n_h, e = q_BxPxHxE.shape
    s, n_k = k_BxSxKxE.shape[1], k_BxSxKxE.shape[2]
    g = n_h // n_k
    q = q_BxPxHxE.astype(dtype).reshape(b, p, n_k, g, e).transpose(0, 2, 3, 1, 4)
    k = k_BxSxKxE.astype(dtype).transpose(0, 2, 1, 3)  # B x K x S x E
    v = v_BxSxKxE.astype(dtype).transpose(0, 2, 1, 3)
    scores = mixed_einsum("bkme,bkse->bkms", q.reshape(b, n_k, g * p, e), k, dtype)
    weights = jax.nn.softmax(scores.reshape(b, n_k, g, p, s) + bias_Bx1x1xPxS, axis=-1)
    out = mixed_einsum("bkms,bkse->bkme", weights.reshape(b, n_k, g * p, s), v, dtype)
    return out.reshape(b, n_k, g, p, e).transpose(0, 3, 1, 2, 4).reshape(b, p, n_h * e)


def _block(cfg: LlamaConfig, h_BxPxD, layer, cos_sin, bias_Bx1x1xPxP):
    """One pre-norm decoder block: GQA self-attention then SwiGLU MLP."""
    b, p, _ = h_BxPxD.shape
    n_h, n_k, e = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    x = rms_norm(h_BxPxD, layer["attn_norm"], cfg.rms_norm_eps)
    qkv = dense(x, layer["w_qkv"])
    if "b_qkv" in layer:
        qkv = qkv + layer["b_qkv"]
    q, k, v = jnp.split(qkv, [n_h * e, (n_h + n_k) * e], axis=-1)
    q = apply_rope(q.reshape(b, p, n_h, e), *cos_sin) * np.float32(1.0 / np.sqrt(e))
    k = apply_rope(k.reshape(b, p, n_k, e), *cos_sin)
    attn = attention(q, k, v.reshape(b, p, n_k, e), bias_Bx1x1xPxP, layer["w_qkv"].dtype)
    h_BxPxD = h_BxPxD + dense(attn, layer["w_o"])
    x = rms_norm(h_BxPxD, layer["mlp_norm"], cfg.rms_norm_eps)
    gate, up = jnp.split(dense(x, layer["w_gate_up"]), 2, axis=-1)
    return h_BxPxD + dense(jax.nn.silu(gate) * up, layer["w_down"])


def embed_tokens(params: Params, tokens_BxS):
    """Token embeddings, B x S x D."""
    return jnp.take(params["embed"], tokens_BxS, axis=0)


def mean_pooled_embeddings(params: Params, tokens_BxS, mask_BxS=None):
    """Mean input embedding over non-padding tokens (the CBP generator's input), B x D."""
    emb = embed_tokens(params, tokens_BxS).astype(jnp.float32)
    if mask_BxS is None:
        return emb.mean(axis=1)
    m = mask_BxS.astype(jnp.float32)[..., None]
    return (emb * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)


def last_token_index(mask_BxS):
    """Index of the last non-padding token per row (left or right padding)."""
    s = mask_BxS.shape[1]
    return s - 1 - jnp.argmax(mask_BxS[:, ::-1].astype(jnp.int32), axis=1)


def head_matrix(params: Params, candidates=None):
    """Output head as D x V, or restricted to candidate ids: D x C or B x D x C."""
    if "lm_head" in params:
        full = params["lm_head"]
        if candidates is None:
            return full
        return (
            jnp.take(full, candidates, axis=1)
            if candidates.ndim == 1
            else jnp.moveaxis(jnp.take(full, candidates, axis=1), 1, 0)
        )
    if candidates is None:
        return params["embed"].T
    rows = jnp.take(params["embed"], candidates, axis=0)  # C x D or B x C x D
    return jnp.swapaxes(rows, -1, -2)


def forward(
    params: Params,
    cfg: LlamaConfig,
    tokens_BxS,
    mask_BxS=None,
    *,
    prompt_BxTxD=None,
    deep_prompts_LxBxTxD=None,
    answer_index_B=None,
    candidates=None,
    full_logits: bool = False,
    return_hidden: bool = False,
    return_pooled: bool = False,
) -> ModelOutput:
    """Run the decoder on token ids with an optional soft prompt before the text.

    Args:
      params: params pytree (see `param_shapes`), in any float dtype.
      cfg: the model config.
      tokens_BxS: int token ids; padding anywhere, marked by `mask_BxS`.
      mask_BxS: 1 for real tokens, 0 for padding (default: all real). Positions count real
        tokens only, so a padded row gives the same answer as the unpadded sequence.
      prompt_BxTxD: soft prompt embeddings placed before the text (shallow prompt).
      deep_prompts_LxBxTxD: per-layer prompts (BBTv2): before layer l, `deep[l]` is added to
        the hidden states at the T prompt slots. The slots start from the shallow prompt, or
        from zeros when none is given (so a one-layer deep prompt equals a shallow one, and
        an all-zero deep prompt leaves a shallow one unchanged).
      answer_index_B: text index whose next-token logits are returned (default: the last
        real token of each row).
      candidates: C or B x C token ids; logits are computed only for them.
      full_logits: return B x S x V logits at every text position instead.
      return_hidden: also return final normalised hidden states at the text positions.
      return_pooled: also return mean-pooled input embeddings of the text.
    """
    validate_inputs(cfg, tokens_BxS, mask_BxS, prompt_BxTxD, deep_prompts_LxBxTxD, candidates)
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    b, s = tokens_BxS.shape
    mask_BxS = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)
    h = embed_tokens(params, tokens_BxS).astype(jnp.float32)  # residual stream in float32
    if deep_prompts_LxBxTxD is not None and prompt_BxTxD is None:
        prompt_BxTxD = jnp.zeros(deep_prompts_LxBxTxD.shape[1:], jnp.float32)
    t = 0 if prompt_BxTxD is None else prompt_BxTxD.shape[1]
    if t:
        h = jnp.concatenate([prompt_BxTxD.astype(dtype).astype(jnp.float32), h], axis=1)
    full_mask_BxP = jnp.concatenate([jnp.ones((b, t), jnp.int32), mask_BxS], axis=1)
    positions_BxP = jnp.maximum(jnp.cumsum(full_mask_BxP, axis=1) - 1, 0)
    causal_PxP = jnp.tril(jnp.ones((t + s, t + s), bool))
    bias = mask_bias(causal_PxP[None] & (full_mask_BxP[:, None, :] > 0))
    cos_sin = rope_tables(positions_BxP, cfg.rope_theta, cfg.head_dim)

    def step(h_BxPxD, xs):
        layer, deep_BxTxD = xs
        if deep_BxTxD is not None:
            h_BxPxD = h_BxPxD.at[:, :t].add(deep_BxTxD.astype(dtype).astype(jnp.float32))
        return _block(cfg, h_BxPxD, layer, cos_sin, bias), None

    h, _ = jax.lax.scan(step, h, (params["layers"], deep_prompts_LxBxTxD))
    h_text = h[:, t:]
    hidden = rms_norm(h_text, params["final_norm"], cfg.rms_norm_eps) if return_hidden else None
    cands = None if candidates is None else jnp.asarray(candidates)
    if full_logits:
        x = (
            hidden
            if hidden is not None
            else rms_norm(h_text, params["final_norm"], cfg.rms_norm_eps)
        )
        w = head_matrix(params, cands)
        logits = head_product(x, w)
    else:
        idx = last_token_index(mask_BxS) if answer_index_B is None else answer_index_B
        x = jnp.take_along_axis(h_text, idx[:, None, None], axis=1)[:, 0]
        x = rms_norm(x, params["final_norm"], cfg.rms_norm_eps)
        w = head_matrix(params, cands)
        logits = head_product(x, w)
    pooled = mean_pooled_embeddings(params, tokens_BxS, mask_BxS) if return_pooled else None
    return ModelOutput(logits.astype(jnp.float32), hidden, pooled)


def layer_inputs(params: Params, cfg: LlamaConfig, tokens_S):
    """Hidden states entering each decoder layer (L x S x D, float32; row 0 the embeddings)
    and the final pre-norm state (S x D), as `forward` computes them, for one text."""
    params = jax.tree.map(lambda w: w.astype(cfg.jnp_dtype), params)
    tokens_1xS = jnp.asarray(tokens_S, jnp.int32)[None]
    s = tokens_1xS.shape[1]
    h = embed_tokens(params, tokens_1xS).astype(jnp.float32)
    bias = mask_bias(jnp.tril(jnp.ones((s, s), bool))[None])
    cos_sin = rope_tables(jnp.arange(s)[None], cfg.rope_theta, cfg.head_dim)

    def step(h_1xSxD, layer):
        return _block(cfg, h_1xSxD, layer, cos_sin, bias), h_1xSxD[0]

    final, inputs_LxSxD = jax.lax.scan(step, h, params["layers"])
    return inputs_LxSxD, final[0]


STATIC_ARGNAMES = ("cfg", "full_logits", "return_hidden", "return_pooled")
forward_jit = jax.jit(forward, static_argnames=STATIC_ARGNAMES)
forward_jit.__doc__ = "`forward` under `jax.jit` with the config and output switches static."
