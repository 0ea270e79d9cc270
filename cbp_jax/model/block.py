"""The decoder's pieces: its params pytree, RMSNorm, RoPE, attention, and one decoder block
whose family differences are config fields (`config.DecoderConfig`).

Shape suffixes: B batch, S text length, T prompt length (the BOS row included), P = T + S
rows, N = T + B*S flattened rows, D hidden, H query heads, K key/value heads, G = H / K,
E head dim, F MLP width, V vocabulary, C candidate answer tokens, L layers, Q query rows,
R key rows, 2 layer kinds (0 global, 1 local sliding-window; one kind without local layers).

The residual stream, norms, RoPE and softmax run in float32; matmul inputs are cast to
cfg.dtype with float32 accumulation. Blocks are stacked on a leading L axis (`lax.scan`);
q/k/v and gate/up projections are stored fused. Every attention variant (plain, a shared
prompt, key/value prefixes) is an `attend` function handed to the same `block`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.config import DecoderConfig
from cbp_jax.model.mixed_dot import dense, head_product, mixed_einsum

Params = dict[str, Any]


def param_shapes(cfg: DecoderConfig) -> dict[str, Any]:
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
    if cfg.qk_norm:
        layers |= {"q_norm": (n_l, e), "k_norm": (n_l, e)}
    if cfg.post_norms:
        layers |= {"post_attn_norm": (n_l, d), "post_mlp_norm": (n_l, d)}
    shapes = {"embed": (cfg.vocab_size, d), "layers": layers, "final_norm": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head"] = (d, cfg.vocab_size)
    return shapes


def init_params(cfg: DecoderConfig, key: jax.Array, std: float = 0.02, norm_std: float = 0.0):
    """Random params in cfg.dtype: normal(0, std) weights, zero biases, norm weights at the
    identity scale (1 - norm_offset) plus normal(0, norm_std) noise."""
    shapes = param_shapes(cfg)
    flat, treedef = jax.tree_util.tree_flatten_with_path(
        shapes, is_leaf=lambda x: isinstance(x, tuple)
    )
    arrays = []
    for (path, shape), k in zip(flat, jax.random.split(key, len(flat)), strict=True):
        name = jax.tree_util.keystr(path)
        if "norm" in name:
            w = (1.0 - cfg.norm_offset) + norm_std * jax.random.normal(k, shape)
        else:
            w = (0.0 if "b_qkv" in name else std) * jax.random.normal(k, shape)
        arrays.append(w.astype(cfg.jnp_dtype))
    return jax.tree.unflatten(treedef, arrays)


def rms_norm(x, weight, eps, offset: float = 0.0):
    """RMSNorm scaling by (offset + weight), computed and returned in float32."""
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    w = weight.astype(jnp.float32)
    return (offset + w if offset else w) * x32


def rope_tables(positions_BxP, theta, head_dim, scaling: float = 1.0):
    """cos and sin of the rotary angles, B x P x 1 x E in float32 (positions / scaling)."""
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    if scaling != 1.0:
        inv_freq = inv_freq / scaling
    angles = positions_BxP[..., None].astype(jnp.float32) * inv_freq  # B x P x E/2
    angles = jnp.concatenate([angles, angles], -1)[:, :, None, :]
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x_BxPxNxE, cos_BxPx1xE, sin_BxPx1xE):
    """Rotary embedding, rotate-half layout (HF Llama), in float32, from `rope_tables`."""
    x = x_BxPxNxE.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return x * cos_BxPx1xE + jnp.concatenate([-x2, x1], axis=-1) * sin_BxPx1xE


def rope_by_kind(cfg: DecoderConfig, positions_BxP):
    """RoPE (cos, sin) stacked by layer kind, each 2 x B x P x 1 x E (1 x ... without local
    layers), so a scanned layer picks its own with `cos[kind]`."""
    e = cfg.head_dim
    tables = [rope_tables(positions_BxP, cfg.rope_theta, e, cfg.rope_scaling_factor)]
    if cfg.sliding_layers:
        tables.append(rope_tables(positions_BxP, cfg.rope_local_theta, e))
    return jnp.stack([c for c, _ in tables]), jnp.stack([s for _, s in tables])


def mask_bias(allowed_BxQxR):
    """Additive attention bias, B x 1 x 1 x Q x R: 0 where allowed, else the float32 minimum."""
    return jnp.where(allowed_BxQxR, 0.0, jnp.finfo(jnp.float32).min)[:, None, None]


def kind_biases(cfg: DecoderConfig, allowed_BxQxR, q_pos_BxQ, k_pos_BxR):
    """Attention biases by layer kind, 2 x B x 1 x 1 x Q x R: global layers see what
    `allowed` allows, local ones only keys fewer than sliding_window positions back (the
    window counts positions, so padding never shifts it). 1 x ... without local layers."""
    biases = [mask_bias(allowed_BxQxR)]
    if cfg.sliding_layers:
        near = (q_pos_BxQ[:, :, None] - k_pos_BxR[:, None, :]) < cfg.sliding_window
        biases.append(mask_bias(allowed_BxQxR & near))
    return jnp.stack(biases)


def attention(q_BxPxHxE, k_BxSxKxE, v_BxSxKxE, bias_Bx1x1xPxS, dtype):
    """Grouped-query softmax attention -> B x P x (H*E), float32 out.

    q must already carry its scale. The G = H / K query heads of a key/value head are
    stacked along the query axis (B x K x G*P x E) so that both products are plain batched
    matmuls over (B, K) with bf16 inputs and float32 accumulation: on XLA's CPU backend this
    layout ran the attention ~1.3x faster than contracting the 5-D einsum directly
    (experiments/results/precision.md). Scores and softmax stay in float32.
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


def block(cfg: DecoderConfig, h_BxPxD, layer, cos, sin, attend):
    """One decoder block: pre-norm GQA self-attention then the gated MLP, optionally with
    QK-norm and post-attention/post-MLP norms. `attend(q, k, v)` -> B x P x (H*E) is the
    attention variant. Returns the new hidden states and this block's post-RoPE (k, v)."""
    b, p, _ = h_BxPxD.shape
    n_h, n_k, e = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

    def norm(x, w):
        return rms_norm(x, w, cfg.rms_norm_eps, cfg.norm_offset)

    qkv = dense(norm(h_BxPxD, layer["attn_norm"]), layer["w_qkv"])
    if "b_qkv" in layer:
        qkv = qkv + layer["b_qkv"]
    q, k, v = jnp.split(qkv, [n_h * e, (n_h + n_k) * e], axis=-1)
    q, k, v = q.reshape(b, p, n_h, e), k.reshape(b, p, n_k, e), v.reshape(b, p, n_k, e)
    if cfg.qk_norm:
        q, k = norm(q, layer["q_norm"]), norm(k, layer["k_norm"])
    q = apply_rope(q, cos, sin) * np.float32(1.0 / np.sqrt(cfg.query_pre_attn_scalar or e))
    k = apply_rope(k, cos, sin)
    out = dense(attend(q, k, v), layer["w_o"])
    h_BxPxD = h_BxPxD + (norm(out, layer["post_attn_norm"]) if cfg.post_norms else out)
    gate, up = jnp.split(dense(norm(h_BxPxD, layer["mlp_norm"]), layer["w_gate_up"]), 2, -1)
    act = jax.nn.silu(gate) if cfg.activation == "silu" else jax.nn.gelu(gate, approximate=True)
    out = dense(act * up, layer["w_down"])
    return h_BxPxD + (norm(out, layer["post_mlp_norm"]) if cfg.post_norms else out), (k, v)


def embed_tokens(params: Params, tokens_BxS):
    """Token embeddings (embedding-table units), B x S x D."""
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
        cols = jnp.take(full, candidates, axis=1)
        return cols if candidates.ndim == 1 else jnp.moveaxis(cols, 1, 0)
    if candidates is None:
        return params["embed"].T
    rows = jnp.take(params["embed"], candidates, axis=0)  # C x D or B x C x D
    return jnp.swapaxes(rows, -1, -2)


def head_logits(params: Params, cfg: DecoderConfig, x_normed, candidates=None):
    """float32 logits of normalised hidden states (B x D or B x S x D), soft-capped if cfg
    says so, for every token or only the candidates (C or B x C ids)."""
    w = head_matrix(params, None if candidates is None else jnp.asarray(candidates))
    logits = head_product(x_normed, w).astype(jnp.float32)
    cap = cfg.final_logit_softcapping
    return logits if cap is None else jnp.tanh(logits / np.float32(cap)) * np.float32(cap)


def answer_logits(params, cfg: DecoderConfig, h_BxSxD, mask_BxS, answer_index_B, candidates):
    """Logits at the answer position of each row (default: its last real token)."""
    idx = last_token_index(mask_BxS) if answer_index_B is None else answer_index_B
    x = jnp.take_along_axis(h_BxSxD, idx[:, None, None], axis=1)[:, 0]
    x = rms_norm(x, params["final_norm"], cfg.rms_norm_eps, cfg.norm_offset)
    return head_logits(params, cfg, x, candidates)
