"""RAPT's privatized-token reconstruction head and its two placements on a decoder.

The head maps a final hidden state h to the vocabulary, softmax(W1 W2 h), W2: D -> c and
W1: c -> |V| (the paper's W); it trains with the PEFT parameters and is dropped at inference.

- "input" (default): the head reads the hidden state at every private (user-text) position t
  of the privatized input x' and predicts the ORIGINAL token x_t there:
      L_rec = mean over private positions t of -log softmax(W1 W2 h_t)[x_t].
  On a decoder h_t attends to the PEFT parameters and to x'_1..x'_t, so the loss depends on
  the input and its gradient shapes how the adapted model represents the privatized text.
  The targets are the user's own tokens: the user computes L_rec; only x' crosses.
- "plain_before" (the earlier placement, kept as an ablation): m fixed plain tokens k are
  prepended to the text (privatized with it) and the head recovers each k_i from the hidden
  state at its position. With causal attention those positions precede the text and never
  see it, and the targets are the same for every example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PLACEMENTS = ("input", "plain_before")
HEAD_VOCABS = ("plain", "full")


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


def input_reconstruction_loss(head: dict, hidden_BxSxD, orig_BxS, private_BxS):
    """Mean over private positions of -log P(original token | h at that position)."""
    logp_BxSxV = head_logp(head, hidden_BxSxD)
    picked_BxS = jnp.take_along_axis(logp_BxSxV, orig_BxS[..., None], -1)[..., 0]
    w_BxS = private_BxS.astype(jnp.float32)
    return -(picked_BxS * w_BxS).sum() / jnp.maximum(w_BxS.sum(), 1.0)


# ---------------------------------------------------------------- the earlier placement


def head_targets(plain_ids_M, head_vocab: str, vocab_size: int):
    """(targets_M, K): each plain token's index in the head's vocabulary of size K."""
    if head_vocab not in HEAD_VOCABS:
        raise ValueError(f"head_vocab must be one of {HEAD_VOCABS}, got {head_vocab!r}")
    if head_vocab == "full":
        return np.asarray(plain_ids_M, np.int32), vocab_size
    uniq, targets = np.unique(np.asarray(plain_ids_M), return_inverse=True)
    return targets.astype(np.int32), len(uniq)


def plain_hidden(hidden_BxSxD, mask_BxS, m: int):
    """Hidden states at the m plain-token positions (the first real tokens of each row)."""
    first_B = mask_BxS.shape[1] - mask_BxS.sum(axis=1)  # left padding
    idx_BxM = first_B[:, None] + jnp.arange(m)
    return jnp.take_along_axis(hidden_BxSxD, idx_BxM[..., None], axis=1)


def reconstruction_loss(head: dict, hidden_BxMxD, plain_ids_M):
    """L_rec = mean over batch and i of -log softmax(W1 W2 h_i)[k_i] (head-vocab indices)."""
    logp = head_logp(head, hidden_BxMxD)
    picked = jnp.take_along_axis(logp, jnp.broadcast_to(plain_ids_M, logp.shape[:2])[..., None], -1)
    return -picked.mean()


def rec_loss(placement: str, head, hidden_BxSxD, mask_BxS, orig_BxS, private_BxS, targets_M):
    """L_rec of either placement (targets_M: the plain tokens' head indices, plain_before)."""
    if placement == "input":
        return input_reconstruction_loss(head, hidden_BxSxD, orig_BxS, private_BxS)
    if placement == "plain_before":
        h = plain_hidden(hidden_BxSxD, mask_BxS, targets_M.shape[0])
        return reconstruction_loss(head, h, targets_M)
    raise ValueError(f"reconstruction placement must be one of {PLACEMENTS}, got {placement!r}")
