"""Three parameter-efficient fine-tuning methods over a frozen decoder, as pure functions.

RAPT (arXiv 2305.06212 v3) trains any of them on privatized text; they share one training
loop (rapt.py) through `init_peft` and `peft_forward`.

- "prompt" (prompt tuning, Lester et al. 2021): a soft prompt T x D placed before the text.
- "prefix" (prefix tuning, Li & Liang 2021): per-layer key/value prefixes L x T x K x E that
  every text position attends to in every layer, before its causal context (`forward`'s
  `kv_prefix`). Prefix keys are used as given (free parameters, no RoPE applied to them)
  and text positions start at T, as with Hugging Face's past_key_values: prefixes holding
  the keys/values of tokens u make the text's output equal to that of [u; text] (for a
  model with a BOS token, [BOS; u; text]: the BOS's slot is part of the prefix).
  Initialised so, from T random vocabulary tokens. RoPE is relative, so prefixes with
  `prefix_mask_T` all 0 give the base model.
- "lora" (Hu et al. 2021): rank-r adapters on the fused q/k/v and output projections,
  merged at apply: W_qkv + (alpha/r) A_qkv B_qkv and W_o + (alpha/r) A_o B_o per layer,
  A ~ N(0, 1/fan_in), B = 0 (so training starts at the base model).

All three are options of the one decoder forward (`cbp_jax.model.decoder`), for any family.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.decoder import forward, layer_kv

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
    k, v = layer_kv(params, cfg, ids_T)
    return {"k_LxTxKxE": k.astype(jnp.float32), "v_LxTxKxE": v.astype(jnp.float32)}


def merge_lora(params, lora: dict, scale: float):
    """Params with W_qkv + scale A_qkv B_qkv and W_o + scale A_o B_o (float32)."""
    layers = dict(params["layers"])
    for w, a, b in (("w_qkv", "a_qkv_LxDxR", "b_qkv_LxRxQ"), ("w_o", "a_o_LxHExR", "b_o_LxRxD")):
        delta = jnp.einsum("ldr,lrq->ldq", lora[a], lora[b])
        layers[w] = layers[w].astype(jnp.float32) + scale * delta
    return {**params, "layers": layers}


def peft_forward(params, cfg, pc: PeftConfig, peft: dict, tokens_BxS, mask_BxS, **kw):
    """ModelOutput of the base model adapted by `peft` (logits B x V at the answer position)."""
    if pc.kind == "prompt":
        prompt = peft["prompt_TxD"]
        prompt = jnp.broadcast_to(prompt, (tokens_BxS.shape[0], *prompt.shape))
        return forward(params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt, **kw)
    if pc.kind == "prefix":
        return forward(params, cfg, tokens_BxS, mask_BxS, kv_prefix=peft, **kw)
    merged = merge_lora(params, peft, pc.alpha / pc.rank)
    return forward(merged, cfg, tokens_BxS, mask_BxS, **kw)
