"""RAPT's public plain tokens on a decoder: which m tokens, privatized and placed after the text.

RAPT's reconstruction task (arXiv 2305.06212) recovers PUBLIC plain tokens k from their
privatized form: the user privatizes k together with its text and sends x' and M(k); the
service trains the PEFT parameters and a head to predict each k_i from the hidden state at
the position of M(k)_i. Everything that loss reads (x', M(k), k) is either privatized or
public, so the trained parameters stay a function of what the local-DP mechanism released.

On a decoder the plain tokens go AFTER the whole rendered prompt: their hidden states attend
to the privatized text (so the loss shapes how the adapted model reads x'), and the answer
position (the prompt's last token) comes before them, so causal attention leaves the task's
class scores exactly as without them. Evaluation therefore needs no plain tokens.

Two choices of k (`PLAIN_CHOICES`):
- "fixed": one sequence of m distinct public ids drawn once from the seed, the same for
  every example (the paper's fixed plain-token sequence);
- "random": fresh public ids per example, drawn from the privatization key (they are sent in
  the clear beside M(k) and reveal nothing about the text).

The text is privatized exactly as without plain tokens (the same key), and k with a key
folded from it: the d_chi mechanism noises every token independently, so this is the same
mechanism as privatizing [x ; k] in one call, and arms with and without reconstruction see
the same x'.
"""

from __future__ import annotations

import jax
import numpy as np

from cbp_jax.privacy.dchi import privatize_ids

PLAIN_CHOICES = ("fixed", "random")
_PLAIN_KEY = 0x504C  # folded into the privatization key for M(k) and the random draw


def plain_pool(vocab_size: int, init_vocab: int, special_ids=()) -> np.ndarray:
    """Candidate plain-token ids: the non-special ids below init_vocab."""
    pool = np.setdiff1d(np.arange(min(init_vocab, vocab_size)), np.asarray(special_ids, int))
    if not len(pool):
        raise ValueError(f"no ids below {init_vocab} to draw plain tokens from")
    return pool


def fixed_plain_ids(m: int, seed: int, pool: np.ndarray) -> np.ndarray:
    """m distinct ids from `pool`, drawn once from `seed` (the same for every example)."""
    if len(pool) < m:
        raise ValueError(f"only {len(pool)} ids to draw {m} plain tokens")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    return rng.choice(pool, m, replace=False).astype(np.int32)


def plain_ids_for(choice: str, key, n: int, m: int, seed: int, pool: np.ndarray) -> np.ndarray:
    """n x m plain-token ids: the fixed sequence on every row, or fresh ids per example."""
    if choice not in PLAIN_CHOICES:
        raise ValueError(f"plain_tokens must be one of {PLAIN_CHOICES}, got {choice!r}")
    if m < 1 or n < 1:
        raise ValueError(f"need n >= 1 examples and m >= 1 plain tokens, got n={n}, m={m}")
    if choice == "fixed":
        return np.broadcast_to(fixed_plain_ids(m, seed, pool), (n, m)).copy()
    draw = int(jax.random.randint(jax.random.fold_in(key, _PLAIN_KEY), (), 0, 2**31 - 1))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11, draw]))
    return rng.choice(pool, (n, m)).astype(np.int32)


def append_private_plain(key, embed_VxD, tokens_BxS, mask_BxS, plain_BxM, eta, *, protected_ids=(),
                         chunk: int = 4096):  # fmt: skip
    """(tokens B x (S+m), mask B x (S+m), answer index B): M(k) appended after the
    (left-padded, already privatized) prompt; the answer index is the prompt's last token."""
    tokens_BxS, mask_BxS = np.asarray(tokens_BxS), np.asarray(mask_BxS)
    plain_BxM = np.asarray(plain_BxM, np.int32)
    b, s = tokens_BxS.shape
    if plain_BxM.ndim != 2 or plain_BxM.shape[0] != b:
        raise ValueError(f"plain tokens must be {b} x m, got {plain_BxM.shape}")
    if not mask_BxS[:, -1].all():
        raise ValueError("plain tokens go after left-padded prompts (last column must be real)")
    noisy_BxM = np.asarray(
        privatize_ids(
            jax.random.fold_in(key, _PLAIN_KEY),
            embed_VxD,
            plain_BxM,
            None,
            eta,
            protected_ids=tuple(protected_ids),
            chunk=chunk,
        )
    )
    tokens = np.concatenate([tokens_BxS, noisy_BxM.astype(tokens_BxS.dtype)], axis=1)
    mask = np.concatenate([mask_BxS, np.ones_like(plain_BxM, dtype=mask_BxS.dtype)], axis=1)
    return tokens, mask, np.full((b,), s - 1, np.int32)
