"""Three parameter-efficient fine-tuning methods over a frozen decoder, as pure functions.

RAPT (arXiv 2305.06212 v3) trains any of them on privatized text; they share one training
loop (rapt.py) through `init_peft` and `peft_forward`.

- "prompt" (prompt tuning, Lester et al. 2021): a soft prompt T x D placed before the text.
- "prefix" (prefix tuning, Li & Liang 2021): per-layer key/value prefixes L x T x K x E that
  every text position attends to in every layer, before its causal context. Prefix keys are
  used as given (free parameters, no RoPE applied to them) and text positions start at T, as
  with Hugging Face's past_key_values: prefixes holding the keys/values of tokens u make the
  text's output equal to that of [u; text]. Initialised so, from T random vocabulary tokens.
  RoPE is relative, so prefixes with `prefix_mask_T` all 0 give the base model.
- "lora" (Hu et al. 2021): rank-r adapters on the fused q/k/v and output projections,
  merged at apply: W_qkv + (alpha/r) A_qkv B_qkv and W_o + (alpha/r) A_o B_o per layer,
  A ~ N(0, 1/fan_in), B = 0 (so training starts at the base model).

`prefix_forward` reuses llama.py's helpers (norms, RoPE, attention, masks); llama.forward
serves the other two methods.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.input_checks import validate_inputs
from cbp_jax.model.llama import (
    ModelOutput,
    apply_rope,
    attention,
    dense,
    embed_tokens,
    forward,
    head_matrix,
    last_token_index,
    mask_bias,
    rms_norm,
    rope_tables,
)

PEFT_KINDS = ("prompt", "prefix", "lora")


@dataclasses.dataclass(frozen=True)
class PeftConfig:
    """kind: one of PEFT_KINDS; length: prompt / prefix tokens T; rank, alpha: LoRA's r and
    scale alpha / r; init_vocab: prompt and prefix tokens are drawn from ids below this."""

    kind: str = "prompt"
    length: int = 10
    rank: int = 4
    alpha: float = 8.0
    init_vocab: int = 5000

    def __post_init__(self):
        if self.kind not in PEFT_KINDS:
            raise ValueError(f"PEFT kind must be one of {PEFT_KINDS}, got {self.kind!r}")
        for name in ("length", "rank", "init_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"PeftConfig.{name} must be a positive int, got {value!r}")
        if not self.alpha > 0:
            raise ValueError(f"PeftConfig.alpha must be > 0, got {self.alpha!r}")


def init_peft(key, params, cfg, pc: PeftConfig) -> dict:
    """Trainable parameters of the chosen method (float32 pytree)."""
    key_ids, key_a, key_o = jax.random.split(key, 3)
    ids = jax.random.randint(key_ids, (pc.length,), 0, min(pc.init_vocab, cfg.vocab_size))
    if pc.kind == "prompt":
        return {"prompt_TxD": params["embed"][ids].astype(jnp.float32)}
    if pc.kind == "prefix":
        return prefix_from_tokens(params, cfg, ids)
    n_l, d = cfg.num_layers, cfg.hidden_size
    he = cfg.num_heads * cfg.head_dim
    qkv = (cfg.num_heads + 2 * cfg.num_kv_heads) * cfg.head_dim
    r = pc.rank
    return {
        "a_qkv_LxDxR": jax.random.normal(key_a, (n_l, d, r)) / np.sqrt(d),
        "b_qkv_LxRxQ": jnp.zeros((n_l, r, qkv), jnp.float32),
        "a_o_LxHExR": jax.random.normal(key_o, (n_l, he, r)) / np.sqrt(he),
        "b_o_LxRxD": jnp.zeros((n_l, r, d), jnp.float32),
    }


def prefix_from_tokens(params, cfg, ids_T) -> dict:
    """Prefixes holding each layer's post-RoPE keys and values of the tokens ids_T."""
    _, (k, v) = prefix_forward(params, cfg, None, jnp.asarray(ids_T)[None], collect_kv=True)
    return {"k_LxTxKxE": k[:, 0].astype(jnp.float32), "v_LxTxKxE": v[:, 0].astype(jnp.float32)}


def merge_lora(params, lora: dict, scale: float):
    """Params with W_qkv + scale A_qkv B_qkv and W_o + scale A_o B_o (float32)."""
    layers = dict(params["layers"])
    for w, a, b in (("w_qkv", "a_qkv_LxDxR", "b_qkv_LxRxQ"), ("w_o", "a_o_LxHExR", "b_o_LxRxD")):
        delta = jnp.einsum("ldr,lrq->ldq", lora[a], lora[b])
        layers[w] = layers[w].astype(jnp.float32) + scale * delta
    return {**params, "layers": layers}


def _prefix_block(cfg, h_BxSxD, layer, cos_sin, bias, pk_TxKxE, pv_TxKxE):
    """A decoder block whose attention also sees the layer's prefix keys and values."""
    b, s, _ = h_BxSxD.shape
    n_h, n_k, e = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    x = rms_norm(h_BxSxD, layer["attn_norm"], cfg.rms_norm_eps)
    qkv = dense(x, layer["w_qkv"])
    if "b_qkv" in layer:
        qkv = qkv + layer["b_qkv"]
    q, k, v = jnp.split(qkv, [n_h * e, (n_h + n_k) * e], axis=-1)
    q = apply_rope(q.reshape(b, s, n_h, e), *cos_sin) * np.float32(1.0 / np.sqrt(e))
    k = apply_rope(k.reshape(b, s, n_k, e), *cos_sin)
    v = v.reshape(b, s, n_k, e)
    kv = (k, v)
    if pk_TxKxE is not None:
        t = pk_TxKxE.shape[0]
        k = jnp.concatenate([jnp.broadcast_to(pk_TxKxE, (b, t, n_k, e)), k], axis=1)
        v = jnp.concatenate([jnp.broadcast_to(pv_TxKxE, (b, t, n_k, e)).astype(v.dtype), v], 1)
    attn = attention(q, k, v, bias, layer["w_qkv"].dtype)
    h_BxSxD = h_BxSxD + dense(attn, layer["w_o"])
    x = rms_norm(h_BxSxD, layer["mlp_norm"], cfg.rms_norm_eps)
    gate, up = jnp.split(dense(x, layer["w_gate_up"]), 2, axis=-1)
    return h_BxSxD + dense(jax.nn.silu(gate) * up, layer["w_down"]), kv


def prefix_forward(
    params,
    cfg,
    prefix: dict | None,
    tokens_BxS,
    mask_BxS=None,
    *,
    prefix_mask_T=None,
    answer_index_B=None,
    return_hidden: bool = False,
    collect_kv: bool = False,
):
    """Decoder with per-layer K/V prefixes; logits B x V at the answer positions.

    prefix: {"k_LxTxKxE", "v_LxTxKxE"} or None; prefix_mask_T: 1 = a text position may attend
    to that prefix slot (default all 1). collect_kv: also return the text's per-layer
    post-RoPE keys and values, each L x B x S x K x E (used to initialise prefixes).
    """
    validate_inputs(cfg, tokens_BxS, mask_BxS, None, None, None)
    dtype = cfg.jnp_dtype
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    b, s = tokens_BxS.shape
    mask = jnp.ones((b, s), jnp.int32) if mask_BxS is None else mask_BxS.astype(jnp.int32)
    h = embed_tokens(params, tokens_BxS).astype(jnp.float32)
    allowed = jnp.tril(jnp.ones((s, s), bool))[None] & (mask[:, None, :] > 0)
    pk = pv = None
    t = 0
    if prefix is not None:
        pk, pv = prefix["k_LxTxKxE"], prefix["v_LxTxKxE"]
        want = (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
        if pk.ndim != 4 or pk.shape != pv.shape or (pk.shape[0], *pk.shape[2:]) != want:
            raise ValueError(f"prefixes must be L x T x K x E with (L, K, E) = {want}")
        t = pk.shape[1]
        pm = jnp.ones((t,), bool) if prefix_mask_T is None else jnp.asarray(prefix_mask_T) > 0
        allowed = jnp.concatenate([jnp.broadcast_to(pm, (b, s, t)), allowed], axis=-1)
    bias = mask_bias(allowed)
    positions_BxS = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0) + t
    cos_sin = rope_tables(positions_BxS, cfg.rope_theta, cfg.head_dim)

    def step(h_BxSxD, xs):
        layer, k_l, v_l = xs
        h_BxSxD, kv = _prefix_block(cfg, h_BxSxD, layer, cos_sin, bias, k_l, v_l)
        return h_BxSxD, kv if collect_kv else None

    h, kvs = jax.lax.scan(step, h, (params["layers"], pk, pv))
    hidden = rms_norm(h, params["final_norm"], cfg.rms_norm_eps) if return_hidden else None
    idx = last_token_index(mask) if answer_index_B is None else answer_index_B
    x_BxD = jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]
    x_BxD = rms_norm(x_BxD, params["final_norm"], cfg.rms_norm_eps)
    out = ModelOutput(dense(x_BxD, head_matrix(params)).astype(jnp.float32), hidden)
    return (out, kvs) if collect_kv else out


def peft_forward(params, cfg, pc: PeftConfig, peft: dict, tokens_BxS, mask_BxS, **kw):
    """ModelOutput of the base model adapted by `peft` (logits B x V at the answer position)."""
    if pc.kind == "prompt":
        prompt = peft["prompt_TxD"]
        prompt = jnp.broadcast_to(prompt, (tokens_BxS.shape[0], *prompt.shape))
        return forward(params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt, **kw)
    if pc.kind == "prefix":
        return prefix_forward(params, cfg, peft, tokens_BxS, mask_BxS, **kw)
    merged = merge_lora(params, peft, pc.alpha / pc.rank)
    return forward(merged, cfg, tokens_BxS, mask_BxS, **kw)
