"""RAPT's reconstruction inside its threat model: the default head recovers PUBLIC plain tokens
placed after the privatized text, so L_rec and its gradient are functions of what the user
sent (x', M(k)) and of public k; the non-private oracle head (original tokens) is not. Plain
tokens after the prompt see the text and leave the task's answer unchanged; the shared loop
trains every PEFT method with every plain-token choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.privacy.inputs import append_private_plain, plain_ids_for, plain_pool
from cbp_jax.privacy.peft import (
    ORACLE,
    PeftConfig,
    init_head,
    init_peft,
    oracle_reconstruction_loss,
)
from cbp_jax.privacy.rapt import (
    RAPTConfig,
    _private,
    evaluate_peft,
    rapt_accuracy,
    rapt_evaluate,
    rapt_loss,
    tune_rapt,
)

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
PLAIN = np.array([10, 11, 12], np.int32)
CANDS = jnp.asarray([[4], [5]], jnp.int32)


@pytest.fixture(scope="module")
def model():
    return init_params(CFG, jax.random.key(0), std=0.2)


def _text(seed, n=8):
    return np.random.default_rng(seed).integers(20, CFG.vocab_size, n).astype(np.int32)


def _batch(placement, sent, original):
    """One row as the service receives it. sent: the privatized text x'; original: the text
    x the user privatized (read by the oracle only). plain_after: M(k) = k (as at eta = inf)
    appended, targets k; plain_before: k prepended; oracle: the text alone."""
    n = len(sent)
    if placement == "plain_after":
        tokens, orig = np.r_[sent, PLAIN], np.r_[original, PLAIN]
        private = np.r_[np.ones(n), np.zeros(3)]
    elif placement == "plain_before":
        tokens, orig = np.r_[PLAIN, sent], np.r_[PLAIN, original]
        private = np.r_[np.zeros(3), np.ones(n)]
    else:
        tokens, orig, private = sent, original, np.ones(n)
    as_row = lambda x: jnp.asarray(np.asarray(x)[None], jnp.int32)  # noqa: E731
    return (as_row(tokens), jnp.ones((1, len(tokens)), jnp.int32), CANDS, jnp.asarray([0]),
            as_row(orig), as_row(private), jnp.asarray(PLAIN[None]))  # fmt: skip


def _train(model, peft):
    pc = PeftConfig(peft, length=3, rank=2)
    return pc, {
        "peft": init_peft(jax.random.key(1), model, CFG, pc),
        "head": init_head(jax.random.key(2), CFG.hidden_size, 8, CFG.vocab_size),
    }


def _rec_and_grad(model, peft, placement, sent, original):
    pc, train = _train(model, peft)

    def rec(t):
        return rapt_loss(t, model, CFG, pc, placement, True, _batch(placement, sent, original))[1][
            1
        ]

    return jax.value_and_grad(rec)(train)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _moved(g1, g2) -> bool:
    """Whether two gradients differ by more than 1e-3 of the first's largest entry."""
    a, b = _leaves(g1), _leaves(g2)
    diff = max(np.abs(x - y).max() for x, y in zip(a, b, strict=True))
    return diff > 1e-3 * max(np.abs(x).max() for x in a)


@pytest.mark.parametrize("peft", ["prompt", "prefix", "lora"])
def test_rec_loss_and_gradient_see_only_the_privatized_text(model, peft):
    """Same x', different originals: RAPT's L_rec and its gradient with respect to every trained
    parameter (PEFT and head) are identical; the oracle head's are not (it reads x)."""
    sent, x1, x2 = _text(0), _text(1), _text(2)
    assert (x1 != x2).any()
    l1, g1 = _rec_and_grad(model, peft, "plain_after", sent, x1)
    l2, g2 = _rec_and_grad(model, peft, "plain_after", sent, x2)
    assert float(l1) > 0 and max(np.abs(g).max() for g in _leaves(g1["peft"])) > 0
    assert float(l1) == float(l2)
    for a, b in zip(_leaves(g1), _leaves(g2), strict=True):
        np.testing.assert_array_equal(a, b)
    # the non-private oracle (upper bound) fails the same check
    o1, h1 = _rec_and_grad(model, peft, ORACLE, sent, x1)
    o2, h2 = _rec_and_grad(model, peft, ORACLE, sent, x2)
    assert abs(float(o1) - float(o2)) > 1e-4
    assert _moved(h1["peft"], h2["peft"])


@pytest.mark.parametrize("peft", ["prompt", "prefix", "lora"])
def test_plain_tokens_after_the_text_see_it_and_leave_the_answer(model, peft):
    """After the text, L_rec's gradient depends on x' (it shapes how x' is read); before it,
    it cannot. Appended plain tokens leave the task loss exactly as without them."""
    a, b = _text(1), _text(2)
    g_a = _rec_and_grad(model, peft, "plain_after", a, a)[1]["peft"]
    g_b = _rec_and_grad(model, peft, "plain_after", b, b)[1]["peft"]
    assert _moved(g_a, g_b)
    if peft == "prompt":
        o_a = _rec_and_grad(model, peft, "plain_before", a, a)[1]["peft"]
        o_b = _rec_and_grad(model, peft, "plain_before", b, b)[1]["peft"]
        np.testing.assert_allclose(o_a["prompt_TxD"], o_b["prompt_TxD"], rtol=1e-5, atol=1e-7)
    pc, train = _train(model, peft)
    with_plain = rapt_loss(train, model, CFG, pc, "plain_after", True, _batch("plain_after", a, a))
    alone = rapt_loss(train, model, CFG, pc, ORACLE, False, _batch(ORACLE, a, a))
    np.testing.assert_allclose(with_plain[1][0], alone[1][0], rtol=1e-5)


def test_plain_token_choices_and_privatized_append(model):
    pool = plain_pool(CFG.vocab_size, 50, special_ids=(0, 1))
    assert 0 not in pool and 1 not in pool and pool.max() == 49
    key = jax.random.key(3)
    fixed = plain_ids_for("fixed", key, 4, 5, seed=7, pool=pool)
    assert (fixed == fixed[0]).all() and len(set(fixed[0])) == 5
    np.testing.assert_array_equal(fixed, plain_ids_for("fixed", jax.random.key(9), 4, 5, 7, pool))
    rand = plain_ids_for("random", key, 4, 5, seed=7, pool=pool)
    assert np.isin(rand, pool).all() and len({tuple(r) for r in rand}) == 4  # fresh per row
    np.testing.assert_array_equal(rand, plain_ids_for("random", key, 4, 5, 7, pool))
    assert (rand != plain_ids_for("random", jax.random.key(4), 4, 5, 7, pool)).any()
    with pytest.raises(ValueError, match="plain_tokens"):
        plain_ids_for("paper", key, 4, 5, 7, pool)
    tokens = np.array([[0, 30, 31], [40, 41, 42]], np.int32)
    mask = np.array([[0, 1, 1], [1, 1, 1]], np.int32)
    t, m, answer = append_private_plain(key, model["embed"], tokens, mask, fixed[:2], jnp.inf)
    np.testing.assert_array_equal(t, np.c_[tokens, fixed[:2]])  # eta = inf: M(k) = k
    assert m[:, 3:].all() and answer.tolist() == [2, 2]
    noisy, _, _ = append_private_plain(key, model["embed"], tokens, mask, fixed[:2], 5.0)
    np.testing.assert_array_equal(noisy[:, :3], tokens)  # the text is not touched again
    assert (noisy[:, 3:] != fixed[:2]).any()
    with pytest.raises(ValueError, match="left-padded"):
        append_private_plain(key, model["embed"], tokens, mask[:, ::-1], fixed[:2], 5.0)


def test_oracle_reconstruction_loss_counts_private_positions_only():
    head = init_head(jax.random.key(0), 4, 3, 7)
    hidden = jax.random.normal(jax.random.key(1), (2, 5, 4))
    orig = jnp.asarray(np.arange(10).reshape(2, 5) % 7, jnp.int32)
    private = jnp.asarray([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1]], jnp.int32)
    logp = jax.nn.log_softmax(hidden @ head["w2_DxC"] @ head["w1_CxK"], -1)
    want = -(logp[0, 1, orig[0, 1]] + logp[0, 2, orig[0, 2]] + logp[1, 4, orig[1, 4]]) / 3
    np.testing.assert_allclose(oracle_reconstruction_loss(head, hidden, orig, private), want, 1e-5)


def test_config_defaults_to_public_plain_tokens():
    rc = RAPTConfig()
    assert rc.placement == "plain_after" and rc.plain_tokens == "fixed" and rc.num_plain_tokens
    with pytest.raises(ValueError, match="num_plain_tokens"):
        RAPTConfig(num_plain_tokens=0)
    with pytest.raises(ValueError, match="plain_tokens"):
        RAPTConfig(plain_tokens="paper")
    with pytest.raises(ValueError, match="head_vocab"):
        RAPTConfig(plain_tokens="random", head_vocab="plain")
    RAPTConfig(placement=ORACLE, num_plain_tokens=0)  # the oracle reads no plain tokens


class CharTokenizer:
    """Character-level stand-in with offsets: one token (id 3..100) per non-space character."""

    pad_token_id, all_special_ids = 0, [0]

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        keep = [i for i, c in enumerate(text) if not c.isspace()]
        out = {"input_ids": [3 + ord(text[i]) % 98 for i in keep]}
        if return_offsets_mapping:
            out["offset_mapping"] = [(i, i + 1) for i in keep]
        return out


ARMS = [(p, "plain_after", "fixed") for p in ("prompt", "prefix", "lora")]
ARMS += [("prompt", "plain_after", "random"), ("lora", ORACLE, "fixed")]


@pytest.mark.parametrize("peft,placement,plain", ARMS)
def test_one_loop_trains_every_method_on_privatized_text(model, peft, placement, plain):
    task = get_task("sst2")
    examples = [{"sentence": w, "label": i % 2} for i, w in enumerate(["ab", "cd", "ef", "gh"])]
    tok = CharTokenizer()
    rc = RAPTConfig(eta=30.0, peft=peft, prompt_len=2, lora_rank=2, epochs=3, batch_size=2,
                    head_dim=4, init_vocab=50, chunk=64, placement=placement,
                    plain_tokens=plain, num_plain_tokens=3)  # fmt: skip
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
