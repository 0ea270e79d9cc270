"""The embedded default model (SmolLM2-135M-Instruct GGUF) against known facts and torch."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model import forward

PROMPTS = [
    "The capital of France is",
    "Review: a gorgeous, witty, seductive movie.\nSentiment (positive or negative):",
    "Review: the plot is dull and the acting is worse.\nSentiment (positive or negative):",
    "Question: Is water wet? Answer yes or no.\nAnswer:",
]
ANSWERS = [
    [" Paris", " London"],
    [" positive", " negative"],
    [" positive", " negative"],
    [" yes", " no"],
]


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_capital_of_france_is_paris(real_model):
    tok = real_model.tokenizer
    ids = _ids(tok, PROMPTS[0])
    assert ids == [504, 3575, 282, 4649, 314]
    logits = forward(real_model.params, real_model.cfg, jnp.asarray([ids])).logits[0]
    probs = jax.nn.softmax(logits)
    top = int(jnp.argmax(probs))
    assert tok.decode([top]) == " Paris"
    assert 0.7 < float(probs[top]) < 0.85  # reference: 0.773


@pytest.fixture(scope="module")
def torch_reference(real_model):
    path = pathlib.Path(real_model.source)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    )
    return model.eval()


def test_logits_match_transformers_from_same_gguf(real_model, torch_reference):
    for text in PROMPTS:
        ids = _ids(real_model.tokenizer, text)
        with torch.no_grad():
            expected = torch_reference(input_ids=torch.tensor([ids])).logits[0].numpy()
        got = forward(real_model.params, real_model.cfg, jnp.asarray([ids]), full_logits=True)
        assert np.abs(np.asarray(got.logits[0]) - expected).max() <= 1e-3, text


def test_bfloat16_agrees_with_float32(real_model):
    cfg32 = real_model.cfg
    cfg16 = cfg32.replace(dtype="bfloat16")
    params16 = jax.tree.map(lambda w: w.astype(jnp.bfloat16), real_model.params)
    tok = real_model.tokenizer
    for text, answers in zip(PROMPTS, ANSWERS, strict=True):
        ids = jnp.asarray([_ids(tok, text)])
        cands = jnp.asarray([_ids(tok, a)[0] for a in answers])
        lp32 = jax.nn.log_softmax(forward(real_model.params, cfg32, ids).logits[0])[cands]
        lp16 = jax.nn.log_softmax(forward(params16, cfg16, ids).logits[0])[cands]
        assert int(jnp.argmax(lp32)) == int(jnp.argmax(lp16)), text
        assert float(jnp.abs(lp32 - lp16).max()) <= 0.1, text


def test_real_model_padding_invariance(real_model):
    tok = real_model.tokenizer
    seqs = [_ids(tok, t) for t in PROMPTS]
    width = max(map(len, seqs)) + 3
    tokens = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros_like(tokens)
    for i, s in enumerate(seqs):
        tokens[i, width - len(s) :], mask[i, width - len(s) :] = s, 1
    batched = forward(real_model.params, real_model.cfg, jnp.asarray(tokens), jnp.asarray(mask))
    for i, s in enumerate(seqs):
        alone = forward(real_model.params, real_model.cfg, jnp.asarray([s])).logits[0]
        np.testing.assert_allclose(np.asarray(batched.logits[i]), np.asarray(alone), atol=2e-4)
