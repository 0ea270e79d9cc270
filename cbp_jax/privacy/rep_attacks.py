"""Attacks on the representation the service computes from privatized text (RAPT, section 5).

The service receives x' = M(x) and runs its model on it; an attacker with the service's
view holds the final hidden states h(x')_t. Both attacks learn on PUBLIC text privatized by
the same mechanism at the same eta (the attacker knows M and eta) and are scored on the
user's private text:

- `fit_inversion` / `invert`: embedding inversion of the representation (after Song &
  Raghunathan 2020): a softmax-regression head h_t -> original token x_t over the tokens seen
  in public text, trained on (h(x')_t, x_t) pairs; scored by `attacks.recovery_rate`.
- `fit_attribute` / `attribute_auc`: attribute inference: a logistic regression on the mean
  hidden state over a text's private positions predicts a binary property of the ORIGINAL
  text (`has_digit`: does it contain a digit); scored by AUC on the private texts.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.loop import optax_step
from cbp_jax.model.decoder import forward


@functools.partial(jax.jit, static_argnames="cfg")
def _hidden(params, cfg, tokens, mask):
    return forward(params, cfg, tokens, mask, return_hidden=True).hidden_BxSxD


def service_hidden(params, cfg, tokens_BxS, mask_BxS, batch_size: int = 16) -> np.ndarray:
    """Final hidden states B x S x D the service computes from the (privatized) tokens."""
    out = []
    for s in range(0, len(tokens_BxS), batch_size):
        t = jnp.asarray(tokens_BxS[s : s + batch_size], jnp.int32)
        out.append(np.asarray(_hidden(params, cfg, t, jnp.asarray(mask_BxS[s : s + batch_size]))))
    return np.concatenate(out)


def _fit(x_NxF, y_N, k, steps, lr, batch, seed):
    """Softmax regression F -> k classes with Adam; returns (W, b)."""
    x = jnp.asarray(x_NxF, jnp.float32)
    y = jnp.asarray(y_N, jnp.int32)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    w = {"w": jnp.zeros((x.shape[1], k)), "b": jnp.zeros((k,)), "mu": mu, "sd": sd}
    opt = optax.adam(lr)
    state = opt.init({"w": w["w"], "b": w["b"]})

    def loss(th, xb, yb):
        logits = ((xb - mu) / sd) @ th["w"] + th["b"]
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1).mean()

    step = jax.jit(lambda theta, state, xb, yb: optax_step(loss, opt)(theta, state, xb, yb)[:2])

    theta, rng = {"w": w["w"], "b": w["b"]}, np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, x.shape[0], min(batch, x.shape[0]))
        theta, state = step(theta, state, x[idx], y[idx])
    return {**theta, "mu": mu, "sd": sd}


def _logits(model, x_NxF):
    return ((jnp.asarray(x_NxF, jnp.float32) - model["mu"]) / model["sd"]) @ model["w"] + model["b"]


def fit_inversion(hidden_BxSxD, orig_BxS, private_BxS, steps=300, lr=1e-2, batch=1024, seed=0):
    """Inversion head fitted on public (h(x')_t, x_t) at private positions."""
    m = np.asarray(private_BxS) > 0
    if not m.any():
        raise ValueError("no private positions to fit the inversion on")
    vocab, y = np.unique(np.asarray(orig_BxS)[m], return_inverse=True)
    model = _fit(np.asarray(hidden_BxSxD)[m], y, len(vocab), steps, lr, batch, seed)
    return {**model, "vocab": jnp.asarray(vocab, jnp.int32)}


def invert(model, hidden_BxSxD) -> np.ndarray:
    """Guessed original token ids B x S."""
    h = np.asarray(hidden_BxSxD)
    guess = np.asarray(model["vocab"])[
        np.asarray(_logits(model, h.reshape(-1, h.shape[-1])).argmax(-1))
    ]
    return guess.reshape(h.shape[:2])


def has_digit(texts) -> np.ndarray:
    """The attribute: 1 if the original text contains a digit."""
    return np.array([any(c.isdigit() for c in t) for t in texts], np.int32)


def pooled(hidden_BxSxD, private_BxS) -> np.ndarray:
    """Mean hidden state over each row's private positions, B x D."""
    w = (np.asarray(private_BxS) > 0).astype(np.float32)[..., None]
    return (np.asarray(hidden_BxSxD) * w).sum(1) / np.maximum(w.sum(1), 1.0)


def fit_attribute(features_BxD, attr_B, steps=300, lr=1e-2, seed=0):
    """Logistic regression (2-class softmax) on public features."""
    attr = np.asarray(attr_B)
    if len(np.unique(attr)) < 2:
        raise ValueError("the attribute takes one value on the public text: nothing to learn")
    return _fit(features_BxD, attr, 2, steps, lr, 256, seed)


def attribute_auc(model, features_BxD, attr_B) -> float:
    """AUC of the attacker's P(attribute = 1) on the private texts (ties 1/2)."""
    attr = np.asarray(attr_B) > 0
    if attr.all() or not attr.any():
        raise ValueError("AUC needs private texts with and without the attribute")
    logits = np.asarray(_logits(model, features_BxD))
    s = logits[:, 1] - logits[:, 0]
    pos, neg = s[attr][:, None], s[~attr][None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())
