"""Gemma 3 forward with one soft prompt shared by every row: the prompt is computed once.

The same saving as `shared_prefix.py` (Llama), for the Gemma decoder: under causal attention
the prompt rows (BOS, then the soft prompt) never see the text, so they run as a single
T-row block and the B*S text rows attend to its keys/values broadcast to B. A candidate then
costs T + B*S token-rows instead of B*(T + S). The numbers equal `gemma.forward` with the
prompt broadcast to B (tested), including the sliding window of the local layers, which
counts positions as `gemma.forward` does: text row at position p sees a prompt key j only
where p - j < window.

Shape suffixes as in `gemma.py`; N = T + B*S flattened rows, T counting the BOS row.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.gemma import embed_scale, norm, rope_by_kind, softcap, with_bos
from cbp_jax.model.gemma_config import GemmaConfig
from cbp_jax.model.llama import (
    Params,
    apply_rope,
    attention,
    dense,
    embed_tokens,
    head_matrix,
    head_product,
    last_token_index,
    mask_bias,
)
from cbp_jax.model.shared_prefix import validate_shared_inputs


def _shared_block(cfg: GemmaConfig, h_NxD, layer, cos, sin, t, b, s, bias_p, bias_t):
    """One Gemma block over [prompt rows; flattened text rows] (one matmul per weight)."""
    n_h, n_k, e, eps = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.rms_norm_eps
    dtype = layer["w_qkv"].dtype
    x = norm(h_NxD, layer["input_norm"], eps)
    q, k, v = jnp.split(dense(x, layer["w_qkv"]), [n_h * e, (n_h + n_k) * e], axis=-1)
    q = apply_rope(norm(q.reshape(1, -1, n_h, e), layer["q_norm"], eps), cos, sin)[0]
    q = q * np.float32(cfg.query_pre_attn_scalar**-0.5)
    k = apply_rope(norm(k.reshape(1, -1, n_k, e), layer["k_norm"], eps), cos, sin)[0]
    k, v = k.astype(dtype), v.reshape(-1, n_k, e).astype(dtype)

    attn_p = attention(q[None, :t], k[None, :t], v[None, :t], bias_p, dtype)

    def with_prompt(x_NxKxE):  # prompt keys/values broadcast to the B rows, then the text's
        x_p = jnp.broadcast_to(x_NxKxE[:t], (b, t, n_k, e))
        return jnp.concatenate([x_p, x_NxKxE[t:].reshape(b, s, n_k, e)], axis=1)

    q_t = q[t:].reshape(b, s, n_h, e)
    attn_t = attention(q_t, with_prompt(k), with_prompt(v), bias_t, dtype)
    attn = jnp.concatenate([attn_p[0], attn_t.reshape(b * s, n_h * e)])
    h_NxD = h_NxD + norm(dense(attn, layer["w_o"]), layer["post_attn_norm"], eps)
    x = norm(h_NxD, layer["pre_mlp_norm"], eps)
    gate, up = jnp.split(dense(x, layer["w_gate_up"]), 2, axis=-1)
    mlp = dense(jax.nn.gelu(gate, approximate=True) * up, layer["w_down"])
    return h_NxD + norm(mlp, layer["post_mlp_norm"], eps)


def _biases(cfg: GemmaConfig, t, mask_BxS, text_pos_BxS):
    """Attention biases [global, local] for the prompt block (2 x 1 x 1 x 1 x T x T) and the
    text rows (2 x B x 1 x 1 x S x (T + S))."""
    s = mask_BxS.shape[1]
    prompt_pos_T = jnp.arange(t)
    causal_TxT = jnp.tril(jnp.ones((t, t), bool))
    near_TxT = (prompt_pos_T[:, None] - prompt_pos_T[None, :]) < cfg.sliding_window
    prompt = jnp.stack([causal_TxT, causal_TxT & near_TxT])[:, None]
    text_keys_BxSxS = jnp.tril(jnp.ones((s, s), bool))[None] & (mask_BxS[:, None, :] > 0)
    keys_BxSxP = jnp.concatenate([jnp.ones((*mask_BxS.shape, t), bool), text_keys_BxSxS], -1)
    key_pos_BxP = jnp.concatenate(
        [jnp.broadcast_to(prompt_pos_T, (len(mask_BxS), t)), text_pos_BxS], 1
    )
    near_BxSxP = (text_pos_BxS[:, :, None] - key_pos_BxP[:, None, :]) < cfg.sliding_window
    text = jnp.stack([keys_BxSxP, keys_BxSxP & near_BxSxP])
    return jax.vmap(mask_bias)(prompt), jax.vmap(mask_bias)(text)


def forward_shared_prompt(
    params: Params,
    cfg: GemmaConfig,
    tokens_BxS,
    mask_BxS=None,
    *,
    prompt_TxD=None,
    deep_prompts_LxTxD=None,
    answer_index_B=None,
    candidates=None,
):
    """Answer-position logits (B x C, or B x V without candidates) for one shared prompt.

    Same contract as `gemma.forward(..., prompt_BxTxD=broadcast(prompt_TxD),
    deep_prompts_LxBxTxD=broadcast(deep_prompts_LxTxD)).logits`; prompts in embedding-table
    units (scaled by sqrt(D) on entry, as in `gemma.py`).
    """
    validate_shared_inputs(cfg, tokens_BxS, mask_BxS, prompt_TxD, deep_prompts_LxTxD, candidates)
    b, s = tokens_BxS.shape
    d = cfg.hidden_size
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    mask_BxS = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)
    scale = embed_scale(cfg)

    def to_stream(x):  # embedding-table units -> residual stream (float32)
        return (x.astype(dtype) * scale).astype(jnp.float32)

    prompt_1xTxD, deep = with_bos(
        params,
        cfg,
        1,
        None if prompt_TxD is None else prompt_TxD[None],
        None if deep_prompts_LxTxD is None else deep_prompts_LxTxD[:, None],
    )
    t = prompt_1xTxD.shape[1]
    deep_LxTxD = None if deep is None else deep[:, 0]

    # Positions as in `gemma.forward`: prompt 0..T-1, text T + (real tokens so far) - 1.
    text_pos_BxS = t + jnp.cumsum(mask_BxS, axis=1) - 1
    positions_1xN = jnp.concatenate([jnp.arange(t), text_pos_BxS.reshape(-1)])[None]
    cos2, sin2 = rope_by_kind(cfg, positions_1xN)
    bias_p2, bias_t2 = _biases(cfg, t, mask_BxS, text_pos_BxS)
    kind_L = jnp.asarray(cfg.sliding_layers, jnp.int32)  # 0 global, 1 local

    emb_NxD = to_stream(embed_tokens(params, tokens_BxS)).reshape(b * s, d)
    h_NxD = jnp.concatenate([to_stream(prompt_1xTxD[0]), emb_NxD])

    def step(h, xs):
        layer, deep_TxD, kind = xs
        if deep_TxD is not None:
            h = h.at[:t].add(to_stream(deep_TxD))
        args = (cos2[kind], sin2[kind], t, b, s, bias_p2[kind], bias_t2[kind])
        return _shared_block(cfg, h, layer, *args), None

    h_NxD, _ = jax.lax.scan(step, h_NxD, (params["layers"], deep_LxTxD, kind_L))
    h_text = h_NxD[t:].reshape(b, s, d)
    idx = last_token_index(mask_BxS) if answer_index_B is None else answer_index_B
    x = jnp.take_along_axis(h_text, idx[:, None, None], axis=1)[:, 0]
    w = head_matrix(params, None if candidates is None else jnp.asarray(candidates))
    logits = head_product(norm(x, params["final_norm"], cfg.rms_norm_eps), w)
    return softcap(logits.astype(jnp.float32), cfg.final_logit_softcapping)
