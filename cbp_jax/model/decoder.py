"""The decoder's forward pass, one for every family (Llama, SmolLM2, Qwen2, Gemma 3), whose
differences are fields of `config.DecoderConfig` read by `block.block`.

Shallow and deep soft prompts, key/value prefixes (prefix tuning) and one prompt shared by
every row (`forward_shared_prompt`, computed once for the batch) are options of the one
forward, not copies of it; LoRA merges into the weights before it (`privacy/peft.py`). By
default the head runs only at one answer position per example, optionally restricted to
candidate token ids (the V x D head at every other position is the largest single waste in
prompt scoring). Prompts are in embedding-table units, like token ids: with
`cfg.embed_scale` (Gemma) they are scaled by sqrt(D) on entry exactly as token embeddings
are. With `cfg.bos_token_id` set, the BOS token is placed before the prompt and text of every
row (callers tokenize without special tokens) unless a key/value prefix is given: the prefix
is then the sequence's start (`layer_kv` of [BOS, tokens]). Shape suffixes as in `block.py`;
positions count real tokens only, so a padded row gives the same answer as the unpadded one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.block import (
    Params,
    answer_logits,
    attention,
    block,
    embed_tokens,
    head_logits,
    kind_biases,
    mean_pooled_embeddings,
    rms_norm,
    rope_by_kind,
)
from cbp_jax.model.config import DecoderConfig
from cbp_jax.model.input_checks import validate_inputs, validate_prefix, validate_shared_inputs


class ModelOutput(NamedTuple):
    """What `forward` returns; fields not asked for are None.

    logits: B x C or B x V at the answer positions, or B x S x V with `full_logits=True`.
    hidden_BxSxD: final (normalised) hidden states at the text positions.
    pooled_BxD: mean of the input token embeddings over non-padding text tokens.
    """

    logits: jax.Array | None
    hidden_BxSxD: jax.Array | None = None
    pooled_BxD: jax.Array | None = None


def to_stream(cfg: DecoderConfig, x):
    """Embedding-table units -> the float32 residual stream (through the parameter dtype)."""
    x = x.astype(cfg.jnp_dtype)
    if cfg.embed_scale:  # sqrt(D) rounded to the parameter dtype, as transformers does
        x = x * jnp.asarray(np.sqrt(cfg.hidden_size), cfg.jnp_dtype)
    return x.astype(jnp.float32)


def _prepare(params: Params, cfg: DecoderConfig, tokens_BxS, mask_BxS):
    params = jax.tree.map(lambda w: w.astype(cfg.jnp_dtype), params)
    b, s = tokens_BxS.shape
    mask_BxS = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)
    return params, mask_BxS


def _with_bos(params, cfg: DecoderConfig, b, prompt_BxTxD, deep_LxBxTxD, bos: bool = True):
    """The prompt rows: the BOS row (if cfg has one and `bos`) then the prompt; deep prompts
    get a zero row for the BOS, and a deep prompt alone starts from a zero prompt."""
    if deep_LxBxTxD is not None and prompt_BxTxD is None:
        prompt_BxTxD = jnp.zeros(deep_LxBxTxD.shape[1:], jnp.float32)
    if cfg.bos_token_id is None or not bos:
        return prompt_BxTxD, deep_LxBxTxD
    row = jnp.broadcast_to(params["embed"][cfg.bos_token_id], (b, 1, cfg.hidden_size))
    row = row.astype(jnp.float32)
    prompt = row if prompt_BxTxD is None else jnp.concatenate([row, prompt_BxTxD], axis=1)
    if deep_LxBxTxD is not None:
        deep_LxBxTxD = jnp.pad(deep_LxBxTxD, ((0, 0), (0, 0), (1, 0), (0, 0)))
    return prompt, deep_LxBxTxD


def run_layers(params, cfg, h_BxPxD, positions_BxP, attend, t, deep_LxBxTxD, extra, collect):
    """The scanned decoder blocks; before layer l, deep[l] is added at the T prompt slots.
    attend(kind, extra[l], q, k, v) is the attention; collect(h in, (k, v)) (or None) what
    each layer gives out. Returns (final hidden states, collected per layer)."""
    cos, sin = rope_by_kind(cfg, positions_BxP)

    def step(h, xs):
        layer, deep, kind, x = xs
        if deep is not None:
            h = h.at[:, :t].add(to_stream(cfg, deep))
        out, kv = block(cfg, h, layer, cos[kind], sin[kind], lambda *qkv: attend(kind, x, *qkv))
        return out, None if collect is None else collect(h, kv)

    kinds_L = jnp.asarray(cfg.layer_kinds, jnp.int32)
    return jax.lax.scan(step, h_BxPxD, (params["layers"], deep_LxBxTxD, kinds_L, extra))


def _run(params, cfg, tokens_BxS, mask_BxS, prompt, deep, kv_prefix, prefix_mask_T, collect):
    """Rows [BOS; prompt; text] after optional K/V prefixes -> (text hidden states B x S x D,
    pre-norm; what `collect` gathered; the number T of prompt rows)."""
    b, s = tokens_BxS.shape
    h = to_stream(cfg, embed_tokens(params, tokens_BxS))
    prompt, deep = _with_bos(params, cfg, b, prompt, deep, bos=kv_prefix is None)
    t = 0 if prompt is None else prompt.shape[1]
    if t:
        h = jnp.concatenate([to_stream(cfg, prompt), h], axis=1)
    full_mask_BxP = jnp.concatenate([jnp.ones((b, t), jnp.int32), mask_BxS], axis=1)
    positions_BxP = jnp.maximum(jnp.cumsum(full_mask_BxP, axis=1) - 1, 0)
    allowed_BxPxR = jnp.tril(jnp.ones((t + s, t + s), bool))[None] & (full_mask_BxP[:, None] > 0)
    key_pos_BxR, prefix = positions_BxP, None
    if kv_prefix is not None:  # prefix slots sit at positions 0..T'-1, before every row
        prefix = (kv_prefix["k_LxTxKxE"], kv_prefix["v_LxTxKxE"])
        tp = prefix[0].shape[1]
        positions_BxP = key_pos_BxR = positions_BxP + tp
        seen_T = jnp.ones((tp,), bool) if prefix_mask_T is None else jnp.asarray(prefix_mask_T) > 0
        allowed_BxPxR = jnp.concatenate(
            [jnp.broadcast_to(seen_T, (b, t + s, tp)), allowed_BxPxR], axis=-1
        )
        key_pos_BxR = jnp.concatenate([jnp.broadcast_to(jnp.arange(tp), (b, tp)), key_pos_BxR], 1)
    biases = kind_biases(cfg, allowed_BxPxR, positions_BxP, key_pos_BxR)

    def attend(kind, prefix_l, q, k, v):
        if prefix_l is not None:
            pk, pv = (jnp.broadcast_to(x, (b, *x.shape)) for x in prefix_l)
            k, v = jnp.concatenate([pk, k], 1), jnp.concatenate([pv.astype(v.dtype), v], 1)
        return attention(q, k, v, biases[kind], cfg.jnp_dtype)

    h, collected = run_layers(params, cfg, h, positions_BxP, attend, t, deep, prefix, collect)
    return h[:, t:], collected, t


def forward(
    params: Params,
    cfg: DecoderConfig,
    tokens_BxS,
    mask_BxS=None,
    *,
    prompt_BxTxD=None,
    deep_prompts_LxBxTxD=None,
    kv_prefix: dict | None = None,
    prefix_mask_T=None,
    answer_index_B=None,
    candidates=None,
    full_logits: bool = False,
    return_hidden: bool = False,
    return_pooled: bool = False,
) -> ModelOutput:
    """Run the decoder on token ids with optional prompts or key/value prefixes.

    Args:
      params: params pytree (see `block.param_shapes`), in any float dtype.
      cfg: the model config.
      tokens_BxS: int token ids; padding anywhere, marked by `mask_BxS`.
      mask_BxS: 1 for real tokens, 0 for padding (default: all real).
      prompt_BxTxD: soft prompt embeddings placed before the text (shallow prompt).
      deep_prompts_LxBxTxD: per-layer prompts (BBTv2): before layer l, `deep[l]` is added to
        the hidden states at the T prompt slots. The slots start from the shallow prompt, or
        from zeros when none is given (so a one-layer deep prompt equals a shallow one, and
        an all-zero deep prompt leaves a shallow one unchanged).
      kv_prefix: {"k_LxTxKxE", "v_LxTxKxE"}: per-layer keys (used as given: post-RoPE) and
        values that every row attends to before its causal context; the rows' positions
        start at T, as with Hugging Face's past_key_values.
      prefix_mask_T: 1 = the rows may attend to that prefix slot (default all 1).
      answer_index_B: text index whose next-token logits are returned (default: the last
        real token of each row).
      candidates: C or B x C token ids; logits are computed only for them.
      full_logits: return B x S x V logits at every text position instead.
      return_hidden: also return final normalised hidden states at the text positions.
      return_pooled: also return mean-pooled input embeddings of the text.
    """
    validate_inputs(cfg, tokens_BxS, mask_BxS, prompt_BxTxD, deep_prompts_LxBxTxD, candidates)
    validate_prefix(cfg, kv_prefix)
    params, mask = _prepare(params, cfg, tokens_BxS, mask_BxS)
    prompt, deep = prompt_BxTxD, deep_prompts_LxBxTxD
    h_text, _, _ = _run(params, cfg, tokens_BxS, mask, prompt, deep, kv_prefix, prefix_mask_T, None)
    hidden = None
    if return_hidden or full_logits:
        hidden = rms_norm(h_text, params["final_norm"], cfg.rms_norm_eps, cfg.norm_offset)
    if full_logits:
        logits = head_logits(params, cfg, hidden, candidates)
    else:
        logits = answer_logits(params, cfg, h_text, mask, answer_index_B, candidates)
    pooled = mean_pooled_embeddings(params, tokens_BxS, mask) if return_pooled else None
    return ModelOutput(logits, hidden if return_hidden else None, pooled)


def forward_shared_prompt(
    params: Params,
    cfg: DecoderConfig,
    tokens_BxS,
    mask_BxS=None,
    *,
    prompt_TxD=None,
    deep_prompts_LxTxD=None,
    answer_index_B=None,
    candidates=None,
):
    """Answer-position logits (B x C, or B x V without candidates) for one shared prompt.

    Same numbers as `forward(..., prompt_BxTxD=broadcast(prompt_TxD), deep_prompts_LxBxTxD=
    broadcast(deep_prompts_LxTxD)).logits` (tested). Under causal attention the prompt rows
    (BOS, then the prompt) never see the text, so they run once as T rows and the text rows
    attend to their keys/values broadcast to B: a candidate costs T + B*S token-rows instead
    of B*(T + S) (at BBT's T=50 on SST-2, ~2x fewer FLOPs). The rows are one 1 x N layout.
    """
    validate_shared_inputs(cfg, tokens_BxS, mask_BxS, prompt_TxD, deep_prompts_LxTxD, candidates)
    params, mask_BxS = _prepare(params, cfg, tokens_BxS, mask_BxS)
    (b, s), d, n_k, e = tokens_BxS.shape, cfg.hidden_size, cfg.num_kv_heads, cfg.head_dim
    prompt = None if prompt_TxD is None else prompt_TxD[None]
    deep = None if deep_prompts_LxTxD is None else deep_prompts_LxTxD[:, None]
    prompt_1xTxD, deep = _with_bos(params, cfg, 1, prompt, deep)
    t = prompt_1xTxD.shape[1]
    # Positions as in `forward`: prompt 0..T-1, text T + (real tokens so far) - 1.
    prompt_pos_1xT, text_pos_BxS = jnp.arange(t)[None], t + jnp.cumsum(mask_BxS, axis=1) - 1
    positions_1xN = jnp.concatenate([prompt_pos_1xT, text_pos_BxS.reshape(1, -1)], 1)
    causal_1xTxT = jnp.tril(jnp.ones((1, t, t), bool))
    bias_p = kind_biases(cfg, causal_1xTxT, prompt_pos_1xT, prompt_pos_1xT)
    text_keys_BxSxS = jnp.tril(jnp.ones((s, s), bool))[None] & (mask_BxS[:, None, :] > 0)
    keys_BxSxR = jnp.concatenate([jnp.ones((b, s, t), bool), text_keys_BxSxS], -1)
    key_pos_BxR = jnp.concatenate([jnp.broadcast_to(prompt_pos_1xT, (b, t)), text_pos_BxS], 1)
    bias_t = kind_biases(cfg, keys_BxSxR, text_pos_BxS, key_pos_BxR)

    def attend(kind, _, q_1xNxHxE, k_1xNxKxE, v_1xNxKxE):
        q, k, v = q_1xNxHxE[0], k_1xNxKxE[0], v_1xNxKxE[0]
        attn_p = attention(q[None, :t], k[None, :t], v[None, :t], bias_p[kind], cfg.jnp_dtype)

        def with_prompt(x_NxKxE):  # prompt keys/values broadcast to the B rows, then the text's
            x_p = jnp.broadcast_to(x_NxKxE[:t], (b, t, n_k, e))
            return jnp.concatenate([x_p, x_NxKxE[t:].reshape(b, s, n_k, e)], axis=1)

        q_t = q[t:].reshape(b, s, *q.shape[1:])
        attn_t = attention(q_t, with_prompt(k), with_prompt(v), bias_t[kind], cfg.jnp_dtype)
        return jnp.concatenate([attn_p[0], attn_t.reshape(b * s, -1)])[None]

    emb_1xNxD = to_stream(cfg, embed_tokens(params, tokens_BxS)).reshape(1, b * s, d)
    h = jnp.concatenate([to_stream(cfg, prompt_1xTxD), emb_1xNxD], axis=1)
    deep_LxTxD = None if deep is None else deep[:, 0]
    h, _ = run_layers(params, cfg, h, positions_1xN, attend, t, deep_LxTxD, None, None)
    h_text = h[0, t:].reshape(b, s, d)
    return answer_logits(params, cfg, h_text, mask_BxS, answer_index_B, candidates)


def _run_one(params: Params, cfg: DecoderConfig, tokens_S, collect):
    tokens_1xS = jnp.asarray(tokens_S, jnp.int32)[None]
    params, mask = _prepare(params, cfg, tokens_1xS, None)
    return _run(params, cfg, tokens_1xS, mask, None, None, None, None, collect)


def layer_inputs(params: Params, cfg: DecoderConfig, tokens_S):
    """Hidden states entering each decoder layer (L x S x D, float32; row 0 the (scaled)
    embeddings) and the final pre-norm state (S x D), as `forward` computes them, for one
    text; residual-stream units, text rows only (a BOS row is computed, then left out)."""
    h_text, inputs_LxPxD, t = _run_one(params, cfg, tokens_S, lambda h, kv: h[0])
    return inputs_LxPxD[:, t:], h_text[0]


def layer_kv(params: Params, cfg: DecoderConfig, tokens_S):
    """Each layer's post-RoPE keys and values of [BOS;] tokens_S, each L x P x K x E: the
    key/value prefix that makes a text's output equal to that of [BOS; tokens; text]."""
    _, (k, v), _ = _run_one(params, cfg, tokens_S, lambda h, kv: kv)
    return k[:, 0], v[:, 0]


STATIC_ARGNAMES = ("cfg", "full_logits", "return_hidden", "return_pooled")
forward_jit = jax.jit(forward, static_argnames=STATIC_ARGNAMES)
forward_jit.__doc__ = "`forward` under `jax.jit` with the config and output switches static."
