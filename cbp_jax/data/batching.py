"""Tokenize rendered prompts and pack them into left-padded batches with little waste.

Left padding puts every answer position at the last column. Examples are sorted by length
and each batch is padded only to a multiple of `pad_to` above its own longest row, so
padding FLOPs stay small and the number of compiled shapes stays bounded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Inputs:
    """User-side data: tokenized inputs, candidate ids and (never sent) labels."""

    tokens_BxS: np.ndarray
    mask_BxS: np.ndarray
    candidates_CxW: np.ndarray
    labels_B: np.ndarray

    def __post_init__(self):
        b = self.tokens_BxS.shape[0]
        if self.mask_BxS.shape != self.tokens_BxS.shape or self.labels_B.shape != (b,):
            raise ValueError("tokens, mask and labels disagree on the number of examples")
        if self.labels_B.min() < 0 or self.labels_B.max() >= self.candidates_CxW.shape[0]:
            raise ValueError("labels out of range of the candidate classes")

    def device(self):
        return tuple(
            jnp.asarray(x, jnp.int32)
            for x in (self.tokens_BxS, self.mask_BxS, self.candidates_CxW, self.labels_B)
        )

    def buckets(self, n: int, pad_to: int = 8):
        """Split into <= n length buckets, each trimmed to its own padded width.

        Returns (buckets, labels_B): buckets is a tuple of (tokens, mask, candidates) device
        tuples and labels_B the labels in bucket order. Scoring bucket by bucket removes
        most padding FLOPs of a fixed training set.
        """
        lengths = self.mask_BxS.sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        parts = [p for p in np.array_split(order, max(1, min(n, len(order)))) if len(p)]
        out = []
        for idx in parts:
            width = int(-(-lengths[idx].max() // pad_to) * pad_to)
            width = min(width, self.tokens_BxS.shape[1])
            tokens, mask = self.tokens_BxS[idx], self.mask_BxS[idx]
            if (mask[:, 0] == 0).all():  # left padded: keep the last `width` columns
                tokens, mask = tokens[:, -width:], mask[:, -width:]
            else:  # right padded
                tokens, mask = tokens[:, :width], mask[:, :width]
            out.append(
                tuple(jnp.asarray(x, jnp.int32) for x in (tokens, mask, self.candidates_CxW))
            )
        labels = jnp.asarray(self.labels_B[np.concatenate(parts)], jnp.int32)
        return tuple(out), labels


def candidate_ids(tokenizer, label_words: Sequence[Sequence[str]]) -> np.ndarray:
    """First token id of " word" for each class's words: C x W (W = max words per class)."""
    per_class = []
    for words in label_words:
        ids = []
        for w in words:
            toks = tokenizer(" " + w.strip(), add_special_tokens=False)["input_ids"]
            if not toks:
                raise ValueError(f"label word {w!r} tokenizes to nothing")
            ids.append(toks[0])
        per_class.append(ids)
    width = max(len(ids) for ids in per_class)
    return np.array([ids + ids[-1:] * (width - len(ids)) for ids in per_class], np.int32)


def encode(tokenizer, texts: Sequence[str], max_len: int | None = None) -> list[list[int]]:
    """Token ids per text, keeping the end (where the answer slot is) when truncating."""
    out = []
    for text in texts:
        if not text:
            raise ValueError("cannot encode an empty text")
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        out.append(ids[-max_len:] if max_len else ids)
    return out


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, pad_to: int = 8):
    """tokens_BxS, mask_BxS with S the longest row rounded up to a multiple of pad_to."""
    width = -(-max(len(s) for s in seqs) // pad_to) * pad_to
    tokens = np.full((len(seqs), width), pad_id, np.int32)
    mask = np.zeros((len(seqs), width), np.int32)
    for i, s in enumerate(seqs):
        tokens[i, width - len(s) :] = s
        mask[i, width - len(s) :] = 1
    return tokens, mask


def make_inputs(tokenizer, task, examples: Sequence[dict], pad_to: int = 8) -> Inputs:
    """Render, tokenize and left-pad examples of a task into one `Inputs` set."""
    if not examples:
        raise ValueError(f"task {task.name}: no examples to encode")
    seqs = encode(tokenizer, [task.render(ex) for ex in examples])
    tokens, mask = left_pad(seqs, tokenizer.pad_token_id or 0, pad_to)
    labels = np.array([ex["label"] for ex in examples], np.int32)
    return Inputs(tokens, mask, candidate_ids(tokenizer, task.label_words), labels)
