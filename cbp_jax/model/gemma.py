"""Pure functional forward pass of a Gemma 3 text decoder, same contract as `llama.forward`.

Shape suffixes as in `llama.py`: B batch, S text length, T prompt length, P = T + S, D hidden,
H query heads, K key/value heads, G = H / K, E head dim, F GeGLU width, V vocabulary,
C candidates, L layers.

What differs from Llama: token embeddings are multiplied by sqrt(D) (in the parameter dtype,
as transformers does); every RMSNorm scales by (1 + w); q and k get their own RMSNorm
(QK-norm); the attention output and the MLP output are normalised again before the residual
add; the MLP is GeGLU (tanh-approximated GELU); layers alternate between local sliding-window
attention (RoPE base `rope_local_theta`) and global attention (`rope_theta`, optionally
linearly scaled); scores are scaled by query_pre_attn_scalar ** -0.5; final logits may be
soft-capped (Gemma 3 has no attention soft-cap). Numerics as `llama.py` (whose attention
kernel this reuses): residual stream, norms, RoPE and softmax in float32, matmul inputs in
cfg.dtype with float32 accumulation. Layers run under `lax.scan`; the layer kind is a
scanned flag that picks the attention bias and the RoPE table.

Soft prompts (shallow and deep) are given in embedding-table units, like token ids: they
are scaled by sqrt(D) on entry exactly as token embeddings are, so a prompt made of
embedding rows equals those tokens, and prompt scales taken from the embedding table
(BBT's projection, prompt initialisation from vocabulary rows) mean the same as for Llama.
With `cfg.bos_token_id` set, the BOS token is placed before the prompt and the text of
every row (the project tokenizes without special tokens; Gemma expects a leading BOS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.gemma_config import GemmaConfig
from cbp_jax.model.input_checks import validate_inputs
from cbp_jax.model.llama import (
    ModelOutput,
    Params,
    apply_rope,
    attention,
    dense,
    embed_tokens,
    head_matrix,
    head_product,
    last_token_index,
    mask_bias,
    mean_pooled_embeddings,
    rms_norm,
)

NEG = jnp.finfo(jnp.float32).min
_NORMS = ("input_norm", "q_norm", "k_norm", "post_attn_norm", "pre_mlp_norm", "post_mlp_norm")


def param_shapes(cfg: GemmaConfig) -> dict:
    """Shape of every parameter, as a nested dict mirroring the params pytree."""
    d, e, f, n_l = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size, cfg.num_layers
    layers = {
        "input_norm": (n_l, d),
        "w_qkv": (n_l, d, (cfg.num_heads + 2 * cfg.num_kv_heads) * e),
        "q_norm": (n_l, e),
        "k_norm": (n_l, e),
        "w_o": (n_l, cfg.num_heads * e, d),
        "post_attn_norm": (n_l, d),
        "pre_mlp_norm": (n_l, d),
        "w_gate_up": (n_l, d, 2 * f),
        "w_down": (n_l, f, d),
        "post_mlp_norm": (n_l, d),
    }
    shapes = {"embed": (cfg.vocab_size, d), "layers": layers, "final_norm": (d,)}
    if not cfg.tie_embeddings:
        shapes["lm_head"] = (d, cfg.vocab_size)
    return shapes


def norm(x, w, eps):
    """Gemma RMSNorm: zero-centred weight, scale (1 + w), float32."""
    return rms_norm(x, 1.0 + w.astype(jnp.float32), eps)


def rope_table(positions_BxP, theta, e, scaling=1.0):
    """cos and sin, each B x P x 1 x E (rotate-half layout), float32."""
    inv_freq = theta ** (-np.arange(0, e, 2, dtype=np.float32) / e) / scaling
    angles = positions_BxP[..., None].astype(jnp.float32) * jnp.asarray(inv_freq, jnp.float32)
    angles = jnp.concatenate([angles, angles], -1)[:, :, None, :]
    return jnp.cos(angles), jnp.sin(angles)


def rope_by_kind(cfg: GemmaConfig, positions_BxP):
    """RoPE (cos, sin) tables stacked by layer kind: index 0 global, 1 local (sliding window),
    each 2 x B x P x 1 x E, so a scanned layer picks its own with `cos2[kind]`."""
    e = cfg.head_dim
    glob = rope_table(positions_BxP, cfg.rope_theta, e, cfg.rope_scaling_factor)
    local = rope_table(positions_BxP, cfg.rope_local_theta, e)
    return jnp.stack([glob[0], local[0]]), jnp.stack([glob[1], local[1]])


def _block(cfg: GemmaConfig, h_BxPxD, layer, cos, sin, bias_Bx1x1xPxP):
    """One decoder block: QK-normed GQA attention then GeGLU, each sandwiched by norms."""
    b, p, _ = h_BxPxD.shape
    n_h, n_k, e, eps = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.rms_norm_eps
    x = norm(h_BxPxD, layer["input_norm"], eps)
    q, k, v = jnp.split(dense(x, layer["w_qkv"]), [n_h * e, (n_h + n_k) * e], axis=-1)
    q = apply_rope(norm(q.reshape(b, p, n_h, e), layer["q_norm"], eps), cos, sin)
    q = q * np.float32(cfg.query_pre_attn_scalar**-0.5)
    k = apply_rope(norm(k.reshape(b, p, n_k, e), layer["k_norm"], eps), cos, sin)
    attn = attention(q, k, v.reshape(b, p, n_k, e), bias_Bx1x1xPxP, layer["w_qkv"].dtype)
    h_BxPxD = h_BxPxD + norm(dense(attn, layer["w_o"]), layer["post_attn_norm"], eps)
    x = norm(h_BxPxD, layer["pre_mlp_norm"], eps)
    gate, up = jnp.split(dense(x, layer["w_gate_up"]), 2, axis=-1)
    mlp = dense(jax.nn.gelu(gate, approximate=True) * up, layer["w_down"])
    return h_BxPxD + norm(mlp, layer["post_mlp_norm"], eps)


def embed_scale(cfg: GemmaConfig):
    """sqrt(D) in the parameter dtype (transformers rounds it to the weight dtype)."""
    return jnp.asarray(np.sqrt(cfg.hidden_size), cfg.jnp_dtype)


def with_bos(params: Params, cfg: GemmaConfig, b, prompt_BxTxD, deep_prompts_LxBxTxD):
    """Prepend the BOS row to the prompt (and a zero row to deep prompts) if cfg asks."""
    if deep_prompts_LxBxTxD is not None and prompt_BxTxD is None:
        prompt_BxTxD = jnp.zeros(deep_prompts_LxBxTxD.shape[1:], jnp.float32)
    if cfg.bos_token_id is None:
        return prompt_BxTxD, deep_prompts_LxBxTxD
    bos = jnp.broadcast_to(params["embed"][cfg.bos_token_id], (b, 1, cfg.hidden_size))
    bos = bos.astype(jnp.float32)
    prompt = bos if prompt_BxTxD is None else jnp.concatenate([bos, prompt_BxTxD], axis=1)
    if deep_prompts_LxBxTxD is not None:
        deep_prompts_LxBxTxD = jnp.pad(deep_prompts_LxBxTxD, ((0, 0), (0, 0), (1, 0), (0, 0)))
    return prompt, deep_prompts_LxBxTxD


def attention_biases(cfg: GemmaConfig, full_mask_BxP, positions_BxP):
    """Additive attention biases for global and for local layers: 2 x B x 1 x 1 x P x P.

    The window counts positions (real tokens), so padding never shifts it."""
    p = full_mask_BxP.shape[1]
    causal = jnp.tril(jnp.ones((p, p), bool))[None] & (full_mask_BxP[:, None, :] > 0)
    near = (positions_BxP[:, :, None] - positions_BxP[:, None, :]) < cfg.sliding_window
    return jnp.stack([mask_bias(causal), mask_bias(causal & near)])


def forward(
    params: Params,
    cfg: GemmaConfig,
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
    """Run the decoder; arguments and outputs exactly as `cbp_jax.model.llama.forward`.

    Prompts are in embedding-table units (scaled by sqrt(D) on entry, see module doc).
    """
    validate_inputs(cfg, tokens_BxS, mask_BxS, prompt_BxTxD, deep_prompts_LxBxTxD, candidates)
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    b, s = tokens_BxS.shape
    mask_BxS = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)
    scale = embed_scale(cfg)

    def to_stream(x):  # embedding-table units -> residual stream (float32)
        return (x.astype(dtype) * scale).astype(jnp.float32)

    h = to_stream(embed_tokens(params, tokens_BxS))
    prompt, deep = with_bos(params, cfg, b, prompt_BxTxD, deep_prompts_LxBxTxD)
    t = 0 if prompt is None else prompt.shape[1]
    if t:
        h = jnp.concatenate([to_stream(prompt), h], axis=1)
    full_mask_BxP = jnp.concatenate([jnp.ones((b, t), jnp.int32), mask_BxS], axis=1)
    positions_BxP = jnp.maximum(jnp.cumsum(full_mask_BxP, axis=1) - 1, 0)
    biases = attention_biases(cfg, full_mask_BxP, positions_BxP)
    cos2, sin2 = rope_by_kind(cfg, positions_BxP)
    kind_L = jnp.asarray(cfg.sliding_layers, jnp.int32)  # 0 global, 1 local

    def step(h_BxPxD, xs):
        layer, deep_BxTxD, kind = xs
        if deep_BxTxD is not None:
            h_BxPxD = h_BxPxD.at[:, :t].add(to_stream(deep_BxTxD))
        return _block(cfg, h_BxPxD, layer, cos2[kind], sin2[kind], biases[kind]), None

    h, _ = jax.lax.scan(step, h, (params["layers"], deep, kind_L))
    h_text = h[:, t:]
    eps = cfg.rms_norm_eps
    hidden = norm(h_text, params["final_norm"], eps) if return_hidden or full_logits else None
    w = head_matrix(params, None if candidates is None else jnp.asarray(candidates))
    if full_logits:
        logits = head_product(hidden, w)
    else:
        idx = last_token_index(mask_BxS) if answer_index_B is None else answer_index_B
        x = jnp.take_along_axis(h_text, idx[:, None, None], axis=1)[:, 0]
        logits = head_product(norm(x, params["final_norm"], eps), w)
    logits = softcap(logits.astype(jnp.float32), cfg.final_logit_softcapping)
    pooled = mean_pooled_embeddings(params, tokens_BxS, mask_BxS) if return_pooled else None
    return ModelOutput(logits, hidden if return_hidden else None, pooled)


def layer_inputs(params: Params, cfg: GemmaConfig, tokens_S):
    """Hidden states entering each decoder layer (L x S x D, float32; row 0 the scaled
    embeddings) and the final pre-norm state (S x D), residual-stream units, text rows only
    (the BOS row that `forward` puts first is computed and then left out)."""
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    tokens_1xS = jnp.asarray(tokens_S, jnp.int32)[None]
    h = (embed_tokens(params, tokens_1xS).astype(dtype) * embed_scale(cfg)).astype(jnp.float32)
    bos, _ = with_bos(params, cfg, 1, None, None)
    t = 0 if bos is None else 1
    if t:
        h = jnp.concatenate([(bos.astype(dtype) * embed_scale(cfg)).astype(jnp.float32), h], 1)
    p = h.shape[1]
    positions_1xP = jnp.arange(p)[None]
    biases = attention_biases(cfg, jnp.ones((1, p), jnp.int32), positions_1xP)
    cos2, sin2 = rope_by_kind(cfg, positions_1xP)

    def step(h_1xPxD, xs):
        layer, kind = xs
        out = _block(cfg, h_1xPxD, layer, cos2[kind], sin2[kind], biases[kind])
        return out, h_1xPxD[0, t:]

    kind_L = jnp.asarray(cfg.sliding_layers, jnp.int32)
    final, inputs_LxSxD = jax.lax.scan(step, h, (params["layers"], kind_L))
    return inputs_LxSxD, final[0, t:]


def softcap(logits, cap):
    return logits if cap is None else jnp.tanh(logits / np.float32(cap)) * np.float32(cap)


STATIC_ARGNAMES = ("cfg", "full_logits", "return_hidden", "return_pooled")
forward_jit = jax.jit(forward, static_argnames=STATIC_ARGNAMES)
forward_jit.__doc__ = "`forward` under `jax.jit` with the config and output switches static."
