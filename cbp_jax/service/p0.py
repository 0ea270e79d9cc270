"""BBT's p0, provider side: which T token ids' embeddings the soft prompt starts from
(docs/methods.md, BBT). Modes (`P0_MODES`, RunConfig.p0):

- "words" (default): the text RoBERTa's ids 1000-1049 decode to, BBT's prompt prefix
  (`data/p0/roberta_ids_1000_1049.json`, shipped), in the served model's tokens (no BOS),
  cut to T tokens or repeated, space-joined, until it reaches T;
- "ids": the served model's own ids offset..offset+T-1 (offset -1: no p0, as earlier);
- "zero": no p0 (the user's A z is the whole prompt).

The user never sees the ids or embeddings; `p0_text` (the decoded prefix) goes into run
records.
"""

from __future__ import annotations

import functools
import json

from cbp_jax.data.paths import REPO_DATA

P0_MODES = ("words", "ids", "zero")
WORDS_FILE = REPO_DATA / "p0" / "roberta_ids_1000_1049.json"


@functools.cache
def bbt_words() -> str:
    """The text RoBERTa's ids 1000-1049 decode to (BBT's prompt prefix)."""
    if not WORDS_FILE.is_file():
        raise FileNotFoundError(f"BBT's p0 word list {WORDS_FILE} is missing from the checkout")
    text = json.loads(WORDS_FILE.read_text(encoding="utf-8"))["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{WORDS_FILE}: 'text' must be a non-empty string")
    return text


def check_mode(p0: str, field: str = "p0") -> None:
    if p0 not in P0_MODES:
        raise ValueError(f"{field} must be one of {P0_MODES}, got {p0!r}")


def words_token_ids(tokenizer, prompt_len: int, text: str | None = None) -> tuple[int, ...]:
    """`text` (default: BBT's words) in `tokenizer`'s ids, no special tokens, exactly
    `prompt_len` of them: cut, or the text repeated (space-joined) until long enough."""
    if prompt_len <= 0:
        raise ValueError(f"prompt_len must be positive, got {prompt_len}")
    text = bbt_words() if text is None else text
    ids = _encode(tokenizer, text)
    if not ids:
        raise ValueError(f"the p0 text {text!r} tokenizes to no tokens")
    repeats = 1
    while len(ids) < prompt_len:
        repeats += 1
        ids = _encode(tokenizer, " ".join([text] * repeats))
    return tuple(int(i) for i in ids[:prompt_len])


def p0_token_ids(p0: str, tokenizer, prompt_len: int, offset: int = 1000):
    """The T token ids whose embeddings are p0 for mode `p0`, or None (no p0)."""
    check_mode(p0)
    if p0 == "zero" or (p0 == "ids" and offset < 0):
        return None
    if p0 == "ids":
        return tuple(range(offset, offset + prompt_len))
    return words_token_ids(tokenizer, prompt_len)


def p0_text(tokenizer, ids) -> str:
    """The decoded prefix p0 starts from ("" for no p0)."""
    return "" if ids is None else tokenizer.decode(list(ids))


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
