"""Zero-shot classification: score each class's label-word tokens at the answer position."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from cbp_jax.data.batching import candidate_ids, encode, length_sorted_batches
from cbp_jax.data.tasks import TaskSpec
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.llama import forward


@functools.partial(jax.jit, static_argnames="cfg")
def class_scores(params, cfg: LlamaConfig, tokens_BxS, mask_BxS, cands_CxW):
    """Class scores B x C: logsumexp over each class's label-word log-probs."""
    c, w = cands_CxW.shape
    logits = forward(params, cfg, tokens_BxS, mask_BxS, full_logits=False).logits  # B x V
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jax.nn.logsumexp(logp[:, cands_CxW.reshape(-1)].reshape(-1, c, w), axis=-1)


def predict(model, task: TaskSpec, examples: list[dict], batch_size: int = 32, progress=True):
    """Predicted class per example (numpy int array, in input order)."""
    texts = [task.render(ex) for ex in examples]
    seqs = encode(model.tokenizer, texts)
    cands = jnp.asarray(candidate_ids(model.tokenizer, task.label_words))
    pad_id = model.tokenizer.pad_token_id or 0
    preds = np.zeros(len(examples), np.int64)
    batches = list(length_sorted_batches(seqs, batch_size, pad_id))
    for idx, tokens, mask in tqdm(batches, desc=f"zero-shot {task.name}", disable=not progress):
        scores = class_scores(
            model.params, model.cfg, jnp.asarray(tokens), jnp.asarray(mask), cands
        )
        preds[idx] = np.asarray(jnp.argmax(scores, axis=-1))
    return preds


def accuracy(model, task: TaskSpec, examples: list[dict], **kwargs) -> float:
    preds = predict(model, task, examples, **kwargs)
    labels = np.array([ex["label"] for ex in examples])
    return float((preds == labels).mean())
