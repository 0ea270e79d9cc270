"""Forward pass with one soft prompt shared by every row: the prompt is computed once.

Under causal attention a prompt placed before the text never sees the text, so its hidden
states and its keys/values at every layer depend on the prompt alone. BBT and BBTv2 score
one candidate prompt on a whole batch; `forward` would recompute the same T prompt rows
for each of the B examples. Here the prompt runs as a single T-row block and the text rows
attend to its broadcast keys/values, so a candidate costs T + B*S token-rows instead of
B*(T + S) (at BBT's T=50 on SST-2, ~2x fewer FLOPs). The numbers equal `forward` with the
prompt broadcast to B (tested); the CBP generator's per-example prompts cannot use this.

Shape suffixes as in `llama.py`; N = T + B*S flattened rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.input_checks import validate_inputs
from cbp_jax.model.llama import (
    Params,
    apply_rope,
    attention,
    dense,
    head_matrix,
    head_product,
    last_token_index,
    mask_bias,
    rms_norm,
    rope_tables,
)


def _shared_block(cfg: LlamaConfig, h_NxD, layer, cos_sin, t, b, s, text_allowed_BxSxS):
    """One decoder block over [prompt rows; flattened text rows] (one matmul per weight)."""
    n_h, n_k, e = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    dtype = layer["w_qkv"].dtype
    x = rms_norm(h_NxD, layer["attn_norm"], cfg.rms_norm_eps)
    qkv = dense(x, layer["w_qkv"])
    if "b_qkv" in layer:
        qkv = qkv + layer["b_qkv"]
    q, k, v = jnp.split(qkv, [n_h * e, (n_h + n_k) * e], axis=-1)
    scale = np.float32(1.0 / np.sqrt(e))
    q = apply_rope(q.reshape(-1, n_h, e)[None], *cos_sin)[0] * scale
    k = apply_rope(k.reshape(-1, n_k, e)[None], *cos_sin)[0].astype(dtype)
    v = v.reshape(-1, n_k, e).astype(dtype)

    # Prompt rows: causal attention within the prompt only.
    causal_1xTxT = jnp.tril(jnp.ones((1, t, t), bool))
    attn_p = attention(q[None, :t], k[None, :t], v[None, :t], mask_bias(causal_1xTxT), dtype)

    # Text rows: every prompt key (all precede the text), then causal unmasked text keys. The
    # prompt's keys/values are broadcast to the B rows (B*T*K*E, small) so that the products
    # are `attention`'s plain batched matmuls (faster on XLA:CPU than 5-D einsums).
    def with_prompt(x_NxKxE):
        x_p = jnp.broadcast_to(x_NxKxE[:t], (b, t, n_k, e))
        return jnp.concatenate([x_p, x_NxKxE[t:].reshape(b, s, n_k, e)], axis=1)

    allowed_BxSxP = jnp.concatenate([jnp.ones((b, s, t), bool), text_allowed_BxSxS], axis=-1)
    q_t = q[t:].reshape(b, s, n_h, e)
    attn_t = attention(q_t, with_prompt(k), with_prompt(v), mask_bias(allowed_BxSxP), dtype)

    attn = jnp.concatenate([attn_p[0], attn_t.reshape(b * s, n_h * e)])
    h_NxD = h_NxD + dense(attn, layer["w_o"])
    x = rms_norm(h_NxD, layer["mlp_norm"], cfg.rms_norm_eps)
    gate, up = jnp.split(dense(x, layer["w_gate_up"]), 2, axis=-1)
    return h_NxD + dense(jax.nn.silu(gate) * up, layer["w_down"])


def validate_shared_inputs(cfg, tokens_BxS, mask_BxS, prompt_TxD, deep_prompts_LxTxD, candidates):
    """`forward_shared_prompt`'s input checks (any model family), each error naming the problem."""
    if prompt_TxD is None and deep_prompts_LxTxD is None:
        raise ValueError("forward_shared_prompt needs prompt_TxD or deep_prompts_LxTxD")
    if prompt_TxD is not None and prompt_TxD.ndim != 2:
        raise ValueError(f"shared prompt must be T x D, got shape {prompt_TxD.shape}")
    if deep_prompts_LxTxD is not None and deep_prompts_LxTxD.ndim != 3:
        raise ValueError(f"shared deep prompts must be L x T x D, got {deep_prompts_LxTxD.shape}")
    validate_inputs(cfg, tokens_BxS, mask_BxS, None, None, candidates)
    d, n_l = cfg.hidden_size, cfg.num_layers
    if prompt_TxD is not None and prompt_TxD.shape[1] != d:
        raise ValueError(f"shared prompt must be T x D = T x {d}, got {prompt_TxD.shape}")
    if deep_prompts_LxTxD is not None and deep_prompts_LxTxD.shape[::2] != (n_l, d):
        raise ValueError(
            f"shared deep prompts must be L x T x D = {n_l} x T x {d}, "
            f"got {deep_prompts_LxTxD.shape}"
        )
    both = prompt_TxD is not None and deep_prompts_LxTxD is not None
    if both and prompt_TxD.shape[0] != deep_prompts_LxTxD.shape[1]:
        raise ValueError("shallow and deep prompts must have the same length T")


def forward_shared_prompt(
    params: Params,
    cfg: LlamaConfig,
    tokens_BxS,
    mask_BxS=None,
    *,
    prompt_TxD=None,
    deep_prompts_LxTxD=None,
    answer_index_B=None,
    candidates=None,
):
    """Answer-position logits (B x C, or B x V without candidates) for one shared prompt.

    Same contract as `forward(..., prompt_BxTxD=broadcast(prompt_TxD), deep_prompts_LxBxTxD=
    broadcast(deep_prompts_LxTxD))` restricted to answer-position logits.
    """
    validate_shared_inputs(cfg, tokens_BxS, mask_BxS, prompt_TxD, deep_prompts_LxTxD, candidates)
    b, s = tokens_BxS.shape
    if prompt_TxD is None:
        prompt_TxD = jnp.zeros(deep_prompts_LxTxD.shape[1:], jnp.float32)
    t, d = prompt_TxD.shape
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    mask_BxS = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)

    # Positions as in `forward`: prompt 0..T-1, text T + (real tokens so far) - 1.
    positions_N = jnp.concatenate(
        [jnp.arange(t), (t + jnp.cumsum(mask_BxS, axis=1) - 1).reshape(-1)]
    )
    cos_sin = rope_tables(positions_N[None], cfg.rope_theta, cfg.head_dim)
    causal_SxS = jnp.tril(jnp.ones((s, s), bool))
    text_allowed_BxSxS = causal_SxS[None] & (mask_BxS[:, None, :] > 0)
    emb_BxSxD = jnp.take(params["embed"], tokens_BxS, axis=0).astype(jnp.float32)
    h_NxD = jnp.concatenate(
        [prompt_TxD.astype(dtype).astype(jnp.float32), emb_BxSxD.reshape(b * s, d)]
    )

    def step(h, xs):
        layer, deep_TxD = xs
        if deep_TxD is not None:
            h = h.at[:t].add(deep_TxD.astype(dtype).astype(jnp.float32))
        return _shared_block(cfg, h, layer, cos_sin, t, b, s, text_allowed_BxSxS), None

    h_NxD, _ = jax.lax.scan(step, h_NxD, (params["layers"], deep_prompts_LxTxD))
    h_text = h_NxD[t:].reshape(b, s, d)
    idx = last_token_index(mask_BxS) if answer_index_B is None else answer_index_B
    x = jnp.take_along_axis(h_text, idx[:, None, None], axis=1)[:, 0]
    x = rms_norm(x, params["final_norm"], cfg.rms_norm_eps)
    cands = None if candidates is None else jnp.asarray(candidates)
    w = head_matrix(params, cands)
    logits = head_product(x, w)
    return logits.astype(jnp.float32)
