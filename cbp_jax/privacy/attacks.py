"""Token inversion attacks on d_chi-privatized text, and the token recovery rate.

The attacker sees privatized ids x'_t and tries to guess the user's originals x_t.
Recovery rate = |{t private : guess_t = x_t}| / |{t private}| over the user-text tokens
(padding, template and special tokens excluded).

(a) Nearest-neighbour embedding inversion. `identity_attack`: guess x'_t itself (the
    token nearest to the noisy embedding e(x_t) + z is most often x_t when eta is large).
    `nearest_public_attack`: guess argmin_{w in P} ||e(w) - e(x'_t)|| over the set P of
    tokens seen in public text (a prior: rare privatized tokens map back to common ones).
(b) Learned inversion (`fit_count_attack`): run the same privatizer at the same eta on
    PUBLIC text to get pairs (x, x'), count n(x', x) and guess argmax_x n(x', x) (the MAP
    classifier under the public token prior, restricted to tokens seen in public text);
    privatized tokens never seen fall back to the identity guess.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.privacy.dchi import nearest_ids, privatize_ids


def recovery_rate(orig_ids, guess_ids, mask) -> float:
    """Fraction of masked (private) tokens whose guess equals the original."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        raise ValueError("recovery rate of no tokens: the mask is empty")
    return float((np.asarray(orig_ids) == np.asarray(guess_ids))[mask].mean())


def identity_attack(priv_ids):
    """Guess that each privatized token is the original."""
    return np.asarray(priv_ids)


def public_vocab(public_ids, public_mask) -> np.ndarray:
    """Sorted distinct ids at masked positions of public text."""
    return np.unique(np.asarray(public_ids)[np.asarray(public_mask) > 0]).astype(np.int32)


def nearest_public_attack(
    embed_VxD, priv_ids, public_ids_P, chunk: int = 4096, max_tokens: int = 8192
):
    """Guess the public token whose embedding is nearest to the privatized token's."""
    priv = np.asarray(priv_ids)
    public = jnp.asarray(public_ids_P, jnp.int32)
    if public.size == 0:
        raise ValueError("nearest_public_attack needs a non-empty public vocabulary")
    e_PxD = jnp.take(embed_VxD, public, axis=0)
    flat_N, banned_P = priv.reshape(-1), jnp.zeros((public.size,), bool)
    out_N = np.empty_like(flat_N)
    for s in range(0, flat_N.size, max_tokens):  # bounded N x chunk distance blocks
        y_NxD = jnp.take(embed_VxD, jnp.asarray(flat_N[s : s + max_tokens]), axis=0)
        out_N[s : s + max_tokens] = public[nearest_ids(y_NxD, e_PxD, banned_P, chunk=chunk)]
    return out_N.reshape(priv.shape)


def fit_count_attack(
    key,
    embed_VxD,
    public_ids,
    public_mask,
    eta,
    *,
    draws: int = 4,
    protected_ids=(),
    chunk: int = 4096,
) -> np.ndarray:
    """Guess table guess_V (privatized id -> guessed original) from public (x, x') pairs.

    `draws` independent privatizations of the public text give the pairs.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    v = embed_VxD.shape[0]
    mask = np.asarray(public_mask) > 0
    orig = np.asarray(public_ids)
    pairs = []
    for k in jax.random.split(key, draws):
        priv = np.asarray(
            privatize_ids(k, embed_VxD, orig, mask, eta, protected_ids=protected_ids, chunk=chunk)
        )
        pairs.append(priv[mask].astype(np.int64) * v + orig[mask])
    codes, counts = np.unique(np.concatenate(pairs), return_counts=True)
    priv_c, orig_c = codes // v, codes % v
    order = np.lexsort((orig_c, -counts, priv_c))  # per x': most counts, then smallest x
    priv_c, orig_c = priv_c[order], orig_c[order]
    first = np.r_[True, priv_c[1:] != priv_c[:-1]]
    guess_V = np.arange(v, dtype=np.int32)
    guess_V[priv_c[first]] = orig_c[first]
    return guess_V


def count_attack(guess_V, priv_ids):
    """Apply a fitted guess table to privatized ids."""
    return np.asarray(guess_V)[np.asarray(priv_ids)]
