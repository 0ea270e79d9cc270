"""RAPT's reconstruction on a decoder: the "input" placement depends on the input (two inputs
give different gradients into the PEFT parameters), the earlier "plain_before" placement does
not; the head learns the original tokens; the shared loop runs every PEFT method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.privacy.peft import PeftConfig, init_peft
from cbp_jax.privacy.rapt import (
    RAPTConfig,
    _private,
    evaluate_peft,
    rapt_accuracy,
    rapt_evaluate,
    rapt_loss,
    tune_rapt,
)
from cbp_jax.privacy.reconstruction import init_head, input_reconstruction_loss

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
PLAIN = np.array([10, 11, 12], np.int32)


@pytest.fixture(scope="module")
def model():
    return init_params(CFG, jax.random.key(0), std=0.2)


def _batch(seed, plain_first=True):
    """One row: plain tokens (unchanged, as at eta = inf) then 8 text tokens."""
    text = np.random.default_rng(seed).integers(20, CFG.vocab_size, 8)
    tokens = jnp.asarray(np.r_[PLAIN, text][None], jnp.int32)
    mask = jnp.ones_like(tokens)
    private = jnp.asarray(np.r_[np.zeros(3), np.ones(8)][None], jnp.int32)
    cands = jnp.asarray([[4], [5]], jnp.int32)
    return tokens, mask, cands, jnp.asarray([0]), tokens, private, jnp.arange(3)


def _rec_grad(model, placement, seed):
    pc = PeftConfig("prompt", length=3)
    train = {
        "peft": init_peft(jax.random.key(1), model, CFG, pc),
        "head": init_head(jax.random.key(2), CFG.hidden_size, 8, CFG.vocab_size),
    }

    def rec(t):
        return rapt_loss(t, model, CFG, pc, placement, True, _batch(seed))[1][1]

    return jax.grad(rec)(train)["peft"]["prompt_TxD"]


def test_input_reconstruction_depends_on_the_input(model):
    g1, g2 = _rec_grad(model, "input", 1), _rec_grad(model, "input", 2)
    assert float(jnp.abs(g1).max()) > 0
    assert float(jnp.abs(g1 - g2).max()) > 1e-3 * float(jnp.abs(g1).max())
    # the earlier placement reads positions before the text: the text cannot change it
    o1, o2 = _rec_grad(model, "plain_before", 1), _rec_grad(model, "plain_before", 2)
    assert float(jnp.abs(o1).max()) > 0
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-7)


def test_input_reconstruction_loss_counts_private_positions_only():
    head = init_head(jax.random.key(0), 4, 3, 7)
    hidden = jax.random.normal(jax.random.key(1), (2, 5, 4))
    orig = jnp.asarray(np.arange(10).reshape(2, 5) % 7, jnp.int32)
    private = jnp.asarray([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]], jnp.int32)
    logp = jax.nn.log_softmax(hidden @ head["w2_DxC"] @ head["w1_CxK"], -1)
    want = -(logp[0, 1, orig[0, 1]] + logp[0, 2, orig[0, 2]] + logp[1, 4, orig[1, 4]]) / 3
    np.testing.assert_allclose(input_reconstruction_loss(head, hidden, orig, private), want, 1e-5)


class CharTokenizer:
    """Character-level stand-in with offsets: one token (id 3..100) per non-space character."""

    pad_token_id, all_special_ids = 0, [0]

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        keep = [i for i, c in enumerate(text) if not c.isspace()]
        out = {"input_ids": [3 + ord(text[i]) % 98 for i in keep]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in keep]
        return out


@pytest.mark.parametrize("peft", ["prompt", "prefix", "lora"])
def test_one_loop_trains_every_method_on_privatized_text(model, peft):
    task = get_task("sst2")
    examples = [{"sentence": w, "label": i % 2} for i, w in enumerate(["ab", "cd", "ef", "gh"])]
    tok = CharTokenizer()
    rc = RAPTConfig(eta=30.0, peft=peft, prompt_len=2, lora_rank=2, epochs=3, batch_size=2,
                    head_dim=4, init_vocab=50, chunk=64)  # fmt: skip
    params, acc, hist = tune_rapt(model, CFG, tok, task, examples, examples, rc, jax.random.key(0))
    assert len(hist) == 3 and hist[0]["train_rec_loss"] > 0 and 0 <= acc <= 1
    assert hist[-1]["train_rec_loss"] < hist[0]["train_rec_loss"]
    test_acc = rapt_accuracy(model, CFG, tok, task, examples, params, rc, jax.random.key(1))
    summary = rapt_evaluate(model, CFG, tok, task, examples, params, rc, jax.random.key(1))
    assert summary["accuracy"] == test_acc and sum(summary["predicted_counts"]) == len(examples)
    # the same privatized batch through the training loop's jitted evaluation
    inputs, _, _, _ = _private(jax.random.key(1), model, tok, task, examples, rc)
    _, batch_acc = evaluate_peft(model, CFG, rc.peft_config, params, *inputs.device())
    assert float(batch_acc) == pytest.approx(test_acc)
    assert 0 <= summary["balanced_acc"] <= 1
