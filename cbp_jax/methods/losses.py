"""User-side losses over returned candidate log-probs (labels never leave the user).

Class score = logsumexp (or mean) over each class's label-word log-probs; then
cross-entropy over the class scores (BBT's default) or a multi-class hinge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def class_scores(logprobs_xCxW, reduce: str = "logsumexp"):
    if reduce == "logsumexp":
        return jax.nn.logsumexp(logprobs_xCxW, axis=-1)
    if reduce == "mean":
        return logprobs_xCxW.mean(axis=-1)
    raise ValueError(f"unknown class-score reduction {reduce!r}")


def cross_entropy(scores_xBxC, labels_B):
    """Mean CE over examples of softmax over class scores; shape = leading axes."""
    logp = jax.nn.log_softmax(scores_xBxC, axis=-1)
    picked = jnp.take_along_axis(
        logp, jnp.broadcast_to(labels_B[..., None], logp.shape[:-1] + (1,)), -1
    )
    return -picked[..., 0].mean(axis=-1)


def hinge(scores_xBxC, labels_B, margin: float = 1.0):
    """Mean multi-class hinge: max(0, margin + max_{c != y} s_c - s_y)."""
    c = scores_xBxC.shape[-1]
    onehot = jax.nn.one_hot(labels_B, c, dtype=bool)
    onehot = jnp.broadcast_to(onehot, scores_xBxC.shape)
    true = jnp.where(onehot, scores_xBxC, 0.0).sum(-1)
    other = jnp.where(onehot, -jnp.inf, scores_xBxC).max(-1)
    return jnp.maximum(0.0, margin + other - true).mean(axis=-1)


def accuracy(scores_xBxC, labels_B):
    return (jnp.argmax(scores_xBxC, axis=-1) == labels_B).mean(axis=-1)


LOSSES = {"ce": cross_entropy, "hinge": hinge}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    return LOSSES[name]
