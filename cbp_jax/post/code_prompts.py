"""POST's private prompt setup as the public code has it (sprintml/POST, scripts/constants.py).

- Text initialisation (`INIT_TEXT_DICT`, used through PEFT's `PromptTuningInit.TEXT`): the
  soft prompt starts as the embeddings of a task sentence, its token ids repeated to fill the
  prompt length and cut to it (PEFT's rule), `text_init_prompt`.
- Several label words per class (`TEXT_LABEL_DICT`): each word's first token, and the class
  score is the MEAN of the raw next-token logits over the class's words
  (model/torch_models.py: `target_logit[index].mean()`), `code_candidates` + `mean_logit_scores`.

Keys are this project's task names; the code's names in brackets (financial_phrasebank is
its "fpb", ag_news its "agnews"). Class order is each task's label order here, which is the
code's for these four tasks (checked in the tests against `TaskSpec.label_words`).
"""

from __future__ import annotations

import numpy as np

from cbp_jax.data.batching import candidate_ids
from cbp_jax.post.audit import word_scores

_SENTIMENT_NEG = (" terrible", " negative", " bad", " poor", " awful")
_SENTIMENT_POS = (" positive", " good", " great", " awesome", " brilliant", " amazing")

INIT_TEXT = {
    "sst2": "Predict if sentiment of this review is positive or negative",
    "financial_phrasebank": (  # [fpb]
        "Predict if sentiment of this financial news is positive, neutral or negative"
    ),
    "boolq": "Choose the correct answer to the following question given the passage",
    "ag_news": "Predict the topic of the news",  # [agnews]
}

LABEL_WORDS = {
    "sst2": (_SENTIMENT_NEG, _SENTIMENT_POS),
    "financial_phrasebank": (
        _SENTIMENT_NEG,
        (" moderate", " neutral", " balanced"),
        _SENTIMENT_POS,
    ),
    "boolq": ((" A", " no", " No"), (" B", " yes", " Yes")),
    "ag_news": ((" world",), (" sports",), (" business",), (" science", " technology")),
}


def _known(task_name: str, table: dict) -> None:
    if task_name not in table:
        raise ValueError(
            f"the public code has no entry for task {task_name!r}; has {sorted(table)}"
        )


def text_init_prompt(embed_VxD, tokenizer, task_name: str, length: int) -> np.ndarray:
    """length x D float32: embeddings of the task's init text, ids repeated to fill `length`
    and cut to it (PEFT's TEXT init; no special tokens)."""
    _known(task_name, INIT_TEXT)
    if length < 1:
        raise ValueError(f"prompt length must be >= 1, got {length}")
    ids = tokenizer(INIT_TEXT[task_name], add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the init text of {task_name!r} tokenizes to nothing")
    ids = (list(ids) * -(-length // len(ids)))[:length]
    return np.asarray(embed_VxD, np.float32)[np.asarray(ids)]


def code_candidates(tokenizer, task_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidates C x W, weights C x W): each label word's first token (padded by repeating
    the class's last one) and 1 / (the class's word count) on its real words, 0 on padding."""
    _known(task_name, LABEL_WORDS)
    cands = candidate_ids(tokenizer, LABEL_WORDS[task_name])  # the words carry their space
    counts = np.array([[len(words)] for words in LABEL_WORDS[task_name]])
    weights = np.where(np.arange(cands.shape[1]) < counts, 1.0 / counts, 0.0)
    return cands, weights.astype(np.float32)


mean_logit_scores = word_scores  # with weights: the mean raw logit over the class's words
