"""The user's side of RAPT: task inputs with its text privatized, and the public plain tokens.

The user privatizes its own text x locally and sends x' = M(x); the provider's template and
verbalizer are public, so only tokens that overlap an example's field values are private.
Tokenization is that of the whole rendered prompt (as in `batching.make_inputs`), with
character offsets telling which tokens are private.

RAPT's reconstruction task (arXiv 2305.06212; peft.py) recovers PUBLIC plain
tokens k from M(k), which the user privatizes with its text. On a decoder they go AFTER the
whole rendered prompt (`append_private_plain`): their hidden states attend to x', and the
answer position (the prompt's last token) comes before them, so causal attention leaves the
class scores exactly as without them and evaluation needs no plain tokens. Placed BEFORE the
text (the "plain_before" ablation), they are prepended and privatized with it. Two choices
of k (`PLAIN_CHOICES`): "fixed", one sequence of m distinct public ids drawn once from the
seed for every example (the paper's); "random", fresh public ids per example, drawn from the
privatization key (sent in the clear beside M(k), they reveal nothing about the text).

The text is privatized exactly as without plain tokens (the same key), and k with a key
folded from it: the d_chi mechanism noises every token independently, so this is the same
mechanism as privatizing [x ; k] in one call, and arms with and without reconstruction see
the same x'.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import jax
import numpy as np

from cbp_jax.data.batching import Inputs, candidate_ids, left_pad
from cbp_jax.data.spec import truncate
from cbp_jax.privacy.dchi import privatize_ids

PLAIN_CHOICES = ("fixed", "random")
_PLAIN_KEY = 0x504C  # folded into the privatization key for M(k) and the random draw


def field_spans(task, example: dict) -> tuple[str, list[tuple[int, int]]]:
    """The rendered prompt and the character span of every field value in it."""
    values = {f: str(example[f]) for f in task.fields}
    for f in task.truncate_fields:
        values[f] = truncate(values[f], task.max_chars)
    text, spans = "", []
    for literal, field, spec, conv in string.Formatter().parse(task.template):
        text += literal
        if field is not None:
            if spec or conv:
                raise ValueError(f"task {task.name}: format specs are not supported here")
            spans.append((len(text), len(text) + len(values[field])))
            text += values[field]
    if text != task.render(example):
        raise ValueError(f"task {task.name}: field spans disagree with task.render")
    return text, spans


def encode_private(tokenizer, task, examples: Sequence[dict], plain_ids_M=(), pad_to: int = 8):
    """Left-padded tokens_BxS, mask_BxS and private_BxS (1 = user text or plain token)."""
    if not examples:
        raise ValueError(f"task {task.name}: no examples to encode")
    seqs, privs = [], []
    for ex in examples:
        text, spans = field_spans(task, ex)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        priv = [any(a < e and s < b for s, e in spans) for a, b in enc["offset_mapping"]]
        seqs.append(list(plain_ids_M) + list(enc["input_ids"]))
        privs.append([1] * len(plain_ids_M) + [int(p) for p in priv])
    tokens_BxS, mask_BxS = left_pad(seqs, tokenizer.pad_token_id or 0, pad_to)
    private_BxS, _ = left_pad(privs, 0, pad_to)
    return tokens_BxS, mask_BxS, private_BxS


def privatized_inputs(key, embed_VxD, tokenizer, task, examples: Sequence[dict], eta,
                      plain_ids_M=(), *, chunk: int = 4096):  # fmt: skip
    """Privatize the private tokens of a task's examples at noise level eta.

    Returns (inputs, original tokens_BxS, private_BxS): `inputs` holds the privatized
    tokens (what the provider sees) with the task's candidates and labels.
    """
    tokens_BxS, mask_BxS, private_BxS = encode_private(tokenizer, task, examples, plain_ids_M)
    special = tuple(tokenizer.all_special_ids)
    new = privatize_ids(
        key, embed_VxD, tokens_BxS, private_BxS, eta, protected_ids=special, chunk=chunk
    )
    new_BxS = np.asarray(new)
    labels_B = np.array([ex["label"] for ex in examples], np.int32)
    cands_CxW = candidate_ids(tokenizer, task.label_words)
    return Inputs(new_BxS, mask_BxS, cands_CxW, labels_B), tokens_BxS, private_BxS


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
    key = jax.random.fold_in(key, _PLAIN_KEY)
    noisy = privatize_ids(
        key, embed_VxD, plain_BxM, None, eta, protected_ids=protected_ids, chunk=chunk
    )
    noisy_BxM = np.asarray(noisy)
    tokens = np.concatenate([tokens_BxS, noisy_BxM.astype(tokens_BxS.dtype)], axis=1)
    mask = np.concatenate([mask_BxS, np.ones_like(plain_BxM, dtype=mask_BxS.dtype)], axis=1)
    return tokens, mask, np.full((b,), s - 1, np.int32)
