"""Held-out accuracy of a payload (or none: zero-shot) through the scoring service.

Examples go in left-padded batches of one row count and at most two widths
(`data.eval_batches.fixed_batches`: at most 2 compiled programs per pass), each batch one
request of population one; labels stay here, on the user side.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from cbp_jax.contract import ScoreRequest
from cbp_jax.data.batching import candidate_ids, encode
from cbp_jax.data.eval_batches import fixed_batches
from cbp_jax.methods.losses import class_scores


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
    """Predicted class per example, in input order. payload: one candidate (leading P = 1).
    Batches hold `batch_size` rows at most (`fixed_batches`: copies fill the last)."""
    if not examples:
        raise ValueError(f"task {task.name}: no examples to evaluate")
    seqs = encode(tokenizer, [task.render(ex) for ex in examples])
    cands = candidate_ids(tokenizer, task.label_words)
    preds = np.zeros(len(examples), np.int64)
    batches = list(fixed_batches(seqs, batch_size, tokenizer.pad_token_id or 0))
    for idx, tokens, mask in tqdm(batches, desc=f"eval {task.name}", disable=not progress):
        resp = service.score(ScoreRequest(kind, payload, tokens, mask, cands))
        scores = np.asarray(class_scores(resp.logprobs_PxBxCxW[0], reduce))
        preds[idx] = np.argmax(scores[: len(idx)], -1)  # the rest are copied rows
    return preds


def prediction_summary(preds, labels, num_classes: int) -> dict:
    """What a model predicts on a test set, beside how often it is right (pure).

    -> {"accuracy", "predicted_counts" (per class), "label_counts", "confusion"
    (rows: true class, columns: predicted class), "majority_class", "majority_acc" (the
    accuracy of always answering the test set's most frequent class; ties: lowest class
    id), "chance" (1 / classes, uniform guessing), "balanced_acc" (`balanced_accuracy`)}.
    """
    preds, labels = np.asarray(preds, np.int64), np.asarray(labels, np.int64)
    if preds.shape != labels.shape or preds.ndim != 1 or not len(preds):
        raise ValueError(
            f"need equal, non-empty 1-D preds and labels: {preds.shape}, {labels.shape}"
        )
    for what, a in (("predictions", preds), ("labels", labels)):
        if a.min() < 0 or a.max() >= num_classes:
            raise ValueError(
                f"{what} must be class ids in [0, {num_classes}), got {a.min()}..{a.max()}"
            )
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, preds), 1)
    label_counts = confusion.sum(axis=1)
    majority = int(np.argmax(label_counts))
    return {
        "accuracy": float((preds == labels).mean()),
        "predicted_counts": confusion.sum(axis=0).tolist(),
        "label_counts": label_counts.tolist(),
        "confusion": confusion.tolist(),
        "majority_class": majority,
        "majority_acc": float(label_counts[majority] / len(labels)),
        "chance": 1.0 / num_classes,
        "balanced_acc": balanced_accuracy(confusion),
    }


def balanced_accuracy(confusion) -> float:
    """Mean per-class recall over the classes the test set holds (rows: true class, columns:
    predicted class). Unlike accuracy it does not reward matching the test set's class
    prior: one class for every example scores 1 / classes, and a k-shot set balanced by
    class, searched for accuracy on it, is judged on what it was tuned for."""
    confusion = np.asarray(confusion, np.float64)
    support = confusion.sum(axis=1)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or not support.any():
        raise ValueError(f"need a square confusion matrix with examples, got {confusion.shape}")
    held = support > 0
    return float(np.mean(np.diag(confusion)[held] / support[held]))


def evaluate(service, tokenizer, task, examples, **kwargs) -> dict:
    """`prediction_summary` of the payload's predictions on `examples` (kwargs: `predict`'s)."""
    preds = predict(service, tokenizer, task, examples, **kwargs)
    return prediction_summary(preds, [ex["label"] for ex in examples], task.num_classes)
