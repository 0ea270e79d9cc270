"""What RAPT trains on privatized text: three parameter-efficient fine-tuning methods over a
frozen decoder (`init_peft`, `peft_forward`; RAPT's loop is rapt.py) and the reconstruction
head, as pure functions.

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

The reconstruction head maps a final hidden state h to the vocabulary, softmax(W1 W2 h),
W2: D -> c and W1: c -> |V| (the paper's W); it trains with the PEFT parameters and is
dropped at inference. Its targets are PUBLIC plain tokens k, privatized with the input
(inputs.py), by placement (`rec_loss`):
- "plain_after" (RAPT, the default): M(k) placed after the privatized prompt; the head
  recovers each k_i from the hidden state at M(k)_i's position, which attends to x':
  L_rec = mean over examples and i of -log softmax(W1 W2 h_i)[k_i], a function of
  (x', M(k), k) only: the service computes it from what the user sent, inside the local-DP
  guarantee.
- "plain_before" (an ablation): M(k) prepended; with causal attention those positions
  precede the text and never see it, so L_rec cannot shape how the model reads x'.
- "input" = `ORACLE`, the NON-PRIVATE ORACLE (an upper bound, not RAPT): predicts the user's
  ORIGINAL token x_t at each private position of x'. Its gradient carries the private text
  into the trained parameters, outside the local-DP guarantee; it is kept only as a labelled
  upper-bound arm (its records ran under this name).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.checks import positive, positive_ints
from cbp_jax.model.decoder import forward, layer_kv

PEFT_KINDS = ("prompt", "prefix", "lora")
ORACLE = "input"  # the non-private oracle head (upper bound), never RAPT's default
PLACEMENTS = ("plain_after", "plain_before", ORACLE)
HEAD_VOCABS = ("plain", "full")


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
        positive_ints(self, "length", "rank", "init_vocab")
        positive(self, "alpha")


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


def init_head(key, hidden_size: int, head_dim: int, head_vocab_size: int) -> dict:
    """W2: D x c and W1: c x K, scaled normal (variance 1/fan-in)."""
    k2, k1 = jax.random.split(key)
    return {
        "w2_DxC": jax.random.normal(k2, (hidden_size, head_dim)) / np.sqrt(hidden_size),
        "w1_CxK": jax.random.normal(k1, (head_dim, head_vocab_size)) / np.sqrt(head_dim),
    }


def head_logp(head: dict, hidden_xD):
    """log softmax(W1 W2 h) over the head's vocabulary, for hidden states of any leading shape."""
    return jax.nn.log_softmax((hidden_xD @ head["w2_DxC"]) @ head["w1_CxK"], axis=-1)


def oracle_reconstruction_loss(head: dict, hidden_BxSxD, orig_BxS, private_BxS):
    """NON-PRIVATE ORACLE: mean over private positions of -log P(original token | h there).
    It reads the user's original tokens, so it is an upper bound, never RAPT."""
    logp_BxSxV = head_logp(head, hidden_BxSxD)
    picked_BxS = jnp.take_along_axis(logp_BxSxV, orig_BxS[..., None], -1)[..., 0]
    w_BxS = private_BxS.astype(jnp.float32)
    return -(picked_BxS * w_BxS).sum() / jnp.maximum(w_BxS.sum(), 1.0)


# ---------------------------------------------------------------- RAPT: public plain tokens


def head_targets(plain_ids_M, head_vocab: str, vocab_size: int):
    """(targets_M, K): each plain token's index in the head's vocabulary of size K."""
    if head_vocab not in HEAD_VOCABS:
        raise ValueError(f"head_vocab must be one of {HEAD_VOCABS}, got {head_vocab!r}")
    if head_vocab == "full":
        return np.asarray(plain_ids_M, np.int32), vocab_size
    uniq, targets = np.unique(np.asarray(plain_ids_M), return_inverse=True)
    return targets.astype(np.int32), len(uniq)


def plain_hidden(hidden_BxSxD, mask_BxS, m: int):
    """Hidden states at m plain tokens placed BEFORE the text (the first real tokens)."""
    first_B = mask_BxS.shape[1] - mask_BxS.sum(axis=1)  # left padding
    idx_BxM = first_B[:, None] + jnp.arange(m)
    return jnp.take_along_axis(hidden_BxSxD, idx_BxM[..., None], axis=1)


def reconstruction_loss(head: dict, hidden_BxMxD, plain_ids_M):
    """L_rec = mean over batch and i of -log softmax(W1 W2 h_i)[k_i]; targets in head-vocab
    indices, M (the same for every row) or B x M (per example)."""
    logp = head_logp(head, hidden_BxMxD)
    picked = jnp.take_along_axis(logp, jnp.broadcast_to(plain_ids_M, logp.shape[:2])[..., None], -1)
    return -picked.mean()


def rec_loss(placement: str, head, hidden_BxSxD, mask_BxS, orig_BxS, private_BxS, targets):
    """L_rec of a placement. targets: the plain tokens' head indices, M or B x M (the plain
    placements; with "plain_after" they are the last m positions); orig_BxS and private_BxS
    are read by the ORACLE only."""
    if placement == "plain_after":
        m = targets.shape[-1]
        return reconstruction_loss(head, hidden_BxSxD[:, -m:], targets)
    if placement == "plain_before":
        h = plain_hidden(hidden_BxSxD, mask_BxS, targets.shape[-1])
        return reconstruction_loss(head, h, targets)
    if placement == ORACLE:
        return oracle_reconstruction_loss(head, hidden_BxSxD, orig_BxS, private_BxS)
    raise ValueError(f"reconstruction placement must be one of {PLACEMENTS}, got {placement!r}")
