"""RAPT's privatized-token reconstruction head and where it reads on a decoder.

The head maps a final hidden state h to the vocabulary, softmax(W1 W2 h), W2: D -> c and
W1: c -> |V| (the paper's W); it trains with the PEFT parameters and is dropped at inference.
Its targets are PUBLIC plain tokens k, privatized with the input (plain_tokens.py):

- "plain_after" (RAPT, the default): M(k) placed after the privatized prompt; the head
  recovers each k_i from the hidden state at M(k)_i's position, which attends to x':
      L_rec = mean over examples and i of -log softmax(W1 W2 h_i)[k_i].
  L_rec and its gradient are functions of (x', M(k), k) only: the service can compute them
  from what the user sent, inside the local-DP guarantee.
- "plain_before" (an ablation): M(k) prepended; with causal attention those positions
  precede the text and never see it, so L_rec cannot shape how the model reads x'.
- "input" = `ORACLE`, the NON-PRIVATE ORACLE (an upper bound, not RAPT): predicts the user's
  ORIGINAL token x_t at each private position of x'. Its gradient carries the private text
  into the trained parameters, outside the local-DP guarantee; it is kept only as a labelled
  upper-bound arm (its records ran under this name).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

ORACLE = "input"  # the non-private oracle head (upper bound), never RAPT's default
PLACEMENTS = ("plain_after", "plain_before", ORACLE)
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
