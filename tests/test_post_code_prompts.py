"""POST's private prompt tuning as the public code runs it: the task's init text (ids repeated
to the prompt length, PEFT's rule), several label words per class scored by their mean raw
logit, lr 5e-4 for 5 epochs by default with Adam, and SGD under DP (the code's Opacus path
asserts SGD); the earlier setup stays an option."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.batching import Inputs
from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.decoder import forward
from cbp_jax.post import DPConfig, accuracy, dp_tune_prompt, make_student
from cbp_jax.post.audit import class_scores_of
from cbp_jax.post.code_prompts import (
    INIT_TEXT,
    LABEL_WORDS,
    code_candidates,
    mean_logit_scores,
    text_init_prompt,
)

CFG = LlamaConfig(101, 48, 80, 4, 6, 2, 8, tie_embeddings=False)


class WordTokenizer:
    """One id per word: its rank in a fixed list, else 3 + crc-free hash (ids 3..99)."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [3 + sum(ord(c) * (i + 1) for i, c in enumerate(w)) % 97
                              for w in text.split()]}  # fmt: skip


def test_label_words_follow_each_tasks_class_order():
    for name, classes in LABEL_WORDS.items():
        ours = get_task(name).label_words
        assert len(classes) == len(ours), name
        for words, own in zip(classes, ours, strict=True):
            stripped = {w.strip().lower() for w in words}
            assert {o.lower() for o in own} & stripped, (name, words, own)
    assert len(LABEL_WORDS["sst2"][0]) == 5 and len(LABEL_WORDS["sst2"][1]) == 6
    assert set(INIT_TEXT) == set(LABEL_WORDS)
    with pytest.raises(ValueError, match="no entry for task"):
        code_candidates(WordTokenizer(), "piqa")


def test_text_init_repeats_the_task_text_to_the_prompt_length():
    embed = np.arange(101 * 4, dtype=np.float32).reshape(101, 4)
    tok = WordTokenizer()
    ids = tok(INIT_TEXT["sst2"])["input_ids"]
    assert len(ids) == 10
    got = text_init_prompt(embed, tok, "sst2", 25)
    np.testing.assert_array_equal(got, embed[(ids * 3)[:25]])
    np.testing.assert_array_equal(text_init_prompt(embed, tok, "sst2", 4), embed[ids[:4]])
    with pytest.raises(ValueError, match="length"):
        text_init_prompt(embed, tok, "sst2", 0)


def test_code_candidates_score_the_mean_logit_over_each_class():
    cands, weights = code_candidates(WordTokenizer(), "sst2")
    assert cands.shape == (2, 6) and cands[0, 5] == cands[0, 4]  # padded by repetition
    np.testing.assert_allclose(weights[0], [0.2] * 5 + [0.0])
    np.testing.assert_allclose(weights[1], [1 / 6] * 6)
    logits = jax.random.normal(jax.random.key(0), (3, 101))
    got = mean_logit_scores(logits, cands, weights)
    want = np.stack([np.asarray(logits)[:, cands[0, :5]].mean(-1),
                     np.asarray(logits)[:, cands[1]].mean(-1)], -1)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5)


def _inputs(n, cands):
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 100, (n, 8)).astype(np.int32)
    return Inputs(tokens, np.ones_like(tokens), cands, (np.arange(n) % 2).astype(np.int32))


def test_dp_tuning_defaults_to_the_codes_setup():
    d = DPConfig()
    assert (d.optimizer, d.learning_rate, d.epochs) == ("auto", 5e-4, 5)
    assert d.resolved_optimizer == "sgd" and DPConfig(epsilon=None).resolved_optimizer == "adam"
    assert DPConfig(optimizer="adam").resolved_optimizer == "adam"
    assert (d.init, d.class_score, d.epsilon, d.delta) == ("text", "mean_logit", 8.0, None)
    teacher = init_params(CFG, jax.random.key(0), std=0.2)
    student, s_cfg = make_student(teacher, CFG)
    tok = WordTokenizer()
    cands, weights = code_candidates(tok, "sst2")
    train = _inputs(8, cands)
    init = text_init_prompt(student["embed"], tok, "sst2", 12)
    kw = dict(prompt_len=12, expected_batch_size=4, physical_batch=4)
    for eps in (None, 8.0):  # DP or not, the same setup
        out = dp_tune_prompt(student, s_cfg, train, train, DPConfig(epsilon=eps, **kw), False,
                             init_prompt_TxD=init, weights_CxW=weights)  # fmt: skip
        assert out.steps == 10 and np.isfinite(out.prompt_TxD).all()
        assert not np.allclose(out.prompt_TxD, init) and "dev_acc" in out.history[-1]
        assert (out.delta == 1 / 8) if eps else out.delta is None  # delta = 1/N, stated
    still = dp_tune_prompt(student, s_cfg, train, None,
                           DPConfig(epsilon=None, learning_rate=1e-12, epochs=1, **kw), False,
                           init_prompt_TxD=init, weights_CxW=weights)  # fmt: skip
    np.testing.assert_allclose(still.prompt_TxD, init, atol=1e-6)  # it starts at the text
    with pytest.raises(ValueError, match="init_prompt_TxD"):
        dp_tune_prompt(student, s_cfg, train, None, DPConfig(**kw), False, weights_CxW=weights)
    with pytest.raises(ValueError, match="weights_CxW"):
        dp_tune_prompt(student, s_cfg, train, None, DPConfig(**kw), False, init_prompt_TxD=init)
    with pytest.raises(ValueError, match="12 x 48"):
        dp_tune_prompt(student, s_cfg, train, None, DPConfig(**kw), False,
                       init_prompt_TxD=init[:5], weights_CxW=weights)  # fmt: skip
    with pytest.raises(ValueError, match="DPConfig.init"):
        DPConfig(init="vocab")
    with pytest.raises(ValueError, match="class_score"):
        DPConfig(class_score="max")


def test_mean_logit_loss_differs_from_logsumexp():
    teacher = init_params(CFG, jax.random.key(1), std=0.2)
    tok = WordTokenizer()
    cands, weights = code_candidates(tok, "sst2")
    train = _inputs(4, cands)
    kw = dict(prompt_len=3, epochs=1, expected_batch_size=4, physical_batch=4, epsilon=None,
              init="random", learning_rate=1e-2)  # fmt: skip
    a = dp_tune_prompt(teacher, CFG, train, None, DPConfig(class_score="logsumexp", **kw), False)
    b = dp_tune_prompt(teacher, CFG, train, None, DPConfig(**kw), False, weights_CxW=weights)
    assert not np.allclose(a.prompt_TxD, b.prompt_TxD)
    assert jnp.asarray(a.prompt_TxD).shape == (3, CFG.hidden_size)


def test_audit_scores_with_the_codes_label_words():
    params = init_params(CFG, jax.random.key(2), std=0.2)
    cands, weights = code_candidates(WordTokenizer(), "sst2")
    data = _inputs(6, cands)
    prompt = np.asarray(params["embed"][:3])
    scores, labels = class_scores_of(params, CFG, data, prompt, 4, weights)
    b = data.tokens_BxS.shape[0]
    logits = forward(params, CFG, jnp.asarray(data.tokens_BxS), jnp.asarray(data.mask_BxS),
                     prompt_BxTxD=jnp.broadcast_to(prompt, (b, *prompt.shape))).logits  # fmt: skip
    want = np.asarray(mean_logit_scores(logits, cands, weights))
    assert scores.shape == (6, 2)  # rows come back in length buckets: compare as sets of rows
    np.testing.assert_allclose(np.sort(scores, 0), np.sort(want, 0), rtol=1e-4, atol=1e-4)
    acc = accuracy(params, CFG, data, prompt, 4, weights)
    assert acc == float((scores.argmax(-1) == labels).mean())
    plain, _ = class_scores_of(params, CFG, data, prompt, 4)
    assert not np.allclose(plain, scores)  # logsumexp of log-probs is another score
