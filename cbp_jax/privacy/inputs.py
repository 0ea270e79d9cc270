"""Task inputs with the user's text privatized and the provider's template left plain.

In RAPT the user privatizes its own text x locally and sends x' = M(k ; x) (the m plain
tokens k prepended, then the whole string privatized); the provider's template and
verbalizer are public, so only tokens that overlap an example's field values (plus the
plain tokens) are private. Tokenization is that of the whole rendered prompt (as in
`batching.make_inputs`), with character offsets telling which tokens are private.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

from cbp_jax.data.batching import Inputs, candidate_ids, left_pad
from cbp_jax.data.spec import truncate
from cbp_jax.privacy.dchi import privatize_ids


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


def privatized_inputs(
    key,
    embed_VxD,
    tokenizer,
    task,
    examples: Sequence[dict],
    eta,
    plain_ids_M=(),
    *,
    chunk: int = 4096,
):
    """Privatize the private tokens of a task's examples at noise level eta.

    Returns (inputs, original tokens_BxS, private_BxS): `inputs` holds the privatized
    tokens (what the provider sees) with the task's candidates and labels.
    """
    tokens_BxS, mask_BxS, private_BxS = encode_private(tokenizer, task, examples, plain_ids_M)
    new_BxS = np.asarray(
        privatize_ids(
            key,
            embed_VxD,
            tokens_BxS,
            private_BxS,
            eta,
            protected_ids=tuple(tokenizer.all_special_ids),
            chunk=chunk,
        )
    )
    labels_B = np.array([ex["label"] for ex in examples], np.int32)
    cands_CxW = candidate_ids(tokenizer, task.label_words)
    return Inputs(new_BxS, mask_BxS, cands_CxW, labels_B), tokens_BxS, private_BxS
