"""Held-out accuracy of a payload (or none: zero-shot) through the scoring service.

Examples are length-sorted into left-padded batches so padding stays small; each batch is
one request with a population of one. Labels stay here, on the user side.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cbp_jax.data.batching import candidate_ids, encode, length_sorted_batches
from cbp_jax.methods.losses import class_scores
from cbp_jax.service.requests import ScoreRequest


def predict(
    service,
    tokenizer,
    task,
    examples,
    kind="none",
    payload=None,
    batch_size=32,
    reduce="logsumexp",
    progress=False,
) -> np.ndarray:
    """Predicted class per example, in input order. payload: one candidate (leading P = 1)."""
    if not examples:
        raise ValueError(f"task {task.name}: no examples to evaluate")
    seqs = encode(tokenizer, [task.render(ex) for ex in examples])
    cands = candidate_ids(tokenizer, task.label_words)
    preds = np.zeros(len(examples), np.int64)
    batches = list(length_sorted_batches(seqs, batch_size, tokenizer.pad_token_id or 0))
    for idx, tokens, mask in tqdm(batches, desc=f"eval {task.name}", disable=not progress):
        resp = service.score(ScoreRequest(kind, payload, tokens, mask, cands))
        preds[idx] = np.argmax(np.asarray(class_scores(resp.logprobs_PxBxCxW[0], reduce)), -1)
    return preds


def accuracy(service, tokenizer, task, examples, **kwargs) -> float:
    preds = predict(service, tokenizer, task, examples, **kwargs)
    return float((preds == np.array([ex["label"] for ex in examples])).mean())
