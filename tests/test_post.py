"""POST: student construction, distillation (loss falls, resume), DP-SGD clipping and
accounting, the transfer's privacy boundary and bad input. Tiny random models only."""

import dataclasses
import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.batching import Inputs
from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.post import (
    DistillConfig,
    DPConfig,
    PrivacyBoundaryError,
    PublicData,
    TransferConfig,
    alpha_heuristic,
    clip_per_example,
    corpus_from_file,
    distill,
    dp_tune_prompt,
    make_student,
    mark_private,
    noise_multiplier_for,
    per_example_grads,
    public_corpus,
    spent_epsilon,
    transfer,
)
from cbp_jax.post.audit import auc_lower_is_member, dp_advantage_bound
from cbp_jax.post.dp import clipped_grad_sum

CFG = LlamaConfig(101, 48, 80, 4, 6, 2, 8, tie_embeddings=False)


@pytest.fixture(scope="module")
def teacher():
    return init_params(CFG, jax.random.key(0), std=0.2)


class WordTokenizer:
    """Deterministic word-level stand-in for a real tokenizer (ids 1..99, pad 0, eos 100)."""

    pad_token_id, eos_token_id = 0, 100

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [zlib.crc32(w.encode()) % 99 + 1 for w in text.split()]}


def tiny_inputs(n, key, s=10, classes=2):
    key_tok, key_lab = jax.random.split(key)
    tokens = np.asarray(jax.random.randint(key_tok, (n, s), 1, CFG.vocab_size), np.int32)
    labels = np.asarray(jax.random.randint(key_lab, (n,), 0, classes), np.int32)
    cands = np.arange(1, 1 + 2 * classes, dtype=np.int32).reshape(classes, 2)
    return Inputs(tokens, np.ones_like(tokens), cands, labels)


# ---------------------------------------------------------------------------- student


def test_student_copies_the_chosen_layers(teacher):
    student, s_cfg = make_student(teacher, CFG)
    assert s_cfg.num_layers == 2 and s_cfg.hidden_size == CFG.hidden_size
    for name in ("embed", "final_norm", "lm_head"):
        np.testing.assert_array_equal(student[name], teacher[name])
    for name, w in teacher["layers"].items():
        np.testing.assert_array_equal(student["layers"][name][0], w[0])
        np.testing.assert_array_equal(student["layers"][name][1], w[CFG.num_layers - 1])
    student, s_cfg = make_student(teacher, CFG, layers=(1, 2, 3))
    np.testing.assert_array_equal(student["layers"]["w_qkv"], teacher["layers"]["w_qkv"][1:])
    for bad in [(), (2, 1), (0, 4), (1, 1)]:
        with pytest.raises(ValueError, match="student layers"):
            make_student(teacher, CFG, layers=bad)


# ---------------------------------------------------------------------------- distillation


def corpus(n=16, s=12):
    return np.asarray(jax.random.randint(jax.random.key(5), (n, s), 0, CFG.vocab_size))


def test_distillation_loss_falls(teacher):
    dcfg = DistillConfig(steps=30, batch_size=4, seq_len=12, learning_rate=1e-2)
    hist = distill(teacher, CFG, corpus(), dcfg, progress=False).history
    first = np.mean([h["loss"] for h in hist[:3]])
    last = np.mean([h["loss"] for h in hist[-3:]])
    assert last < 0.8 * first, (first, last)
    assert hist[-1]["kl"] < hist[0]["kl"]


def test_frozen_embeddings_stay_the_teachers(teacher):
    """By default only the blocks and the final norm train (the student ships without
    embeddings); freeze_embeddings=False trains them too, as the public code does."""
    dcfg = DistillConfig(steps=3, batch_size=2, seq_len=8, learning_rate=1e-2)
    frozen = distill(teacher, CFG, corpus(), dcfg, progress=False).params
    for name in ("embed", "lm_head"):
        np.testing.assert_array_equal(frozen[name], teacher[name])
    assert not np.allclose(frozen["layers"]["w_qkv"][0], teacher["layers"]["w_qkv"][0])
    assert not np.allclose(frozen["final_norm"], teacher["final_norm"])
    every = DistillConfig(steps=3, batch_size=2, seq_len=8, learning_rate=1e-2,
                          freeze_embeddings=False)  # fmt: skip
    trained = distill(teacher, CFG, corpus(), every, progress=False).params
    assert not np.allclose(trained["embed"], teacher["embed"])


def test_distillation_resumes_to_the_same_params(teacher, tmp_path):
    dcfg = DistillConfig(steps=6, batch_size=2, seq_len=8, learning_rate=1e-2, checkpoint_every=2)
    whole = distill(teacher, CFG, corpus(), dcfg, progress=False)

    def die(step, _):
        if step == 3:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        distill(teacher, CFG, corpus(), dcfg, tmp_path, progress=False, on_step=die)
    ran = []  # a resumed run starts after the last checkpoint (step 2), not from scratch
    resumed = distill(
        teacher, CFG, corpus(), dcfg, tmp_path, progress=False, on_step=lambda s, _: ran.append(s)
    )
    assert ran == [3, 4, 5, 6]
    jax.tree.map(np.testing.assert_array_equal, resumed.params, whole.params)
    assert [h["step"] for h in resumed.history] == list(range(1, 7))
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 6
    with pytest.raises(ValueError, match="another config"):
        distill(teacher, CFG, corpus(), DistillConfig(steps=7, seq_len=8), tmp_path)
    with pytest.raises(ValueError, match="more than 4"):
        distill(teacher, CFG, corpus(), dataclasses.replace(dcfg, steps=4), tmp_path)
    longer = dataclasses.replace(dcfg, steps=8)  # extending equals one longer run
    extended = distill(teacher, CFG, corpus(), longer, tmp_path, progress=False)
    direct = distill(teacher, CFG, corpus(), longer, progress=False)
    jax.tree.map(np.testing.assert_array_equal, extended.params, direct.params)


# ---------------------------------------------------------------------------- DP-SGD


def test_dp_clips_every_per_example_gradient(teacher):
    student, s_cfg = make_student(teacher, CFG)
    data = tiny_inputs(6, jax.random.key(1))
    tokens, mask, cands, labels = data.device()
    prompt = 0.5 * jax.random.normal(jax.random.key(2), (3, CFG.hidden_size))
    grads = per_example_grads(prompt, student, s_cfg, tokens, mask, cands, labels)
    raw = np.linalg.norm(np.asarray(grads).reshape(6, -1), axis=1)
    clip = float(np.median(raw))  # binds for about half the examples
    clipped, norms = clip_per_example(grads, clip)
    after = np.linalg.norm(np.asarray(clipped).reshape(6, -1), axis=1)
    np.testing.assert_allclose(norms, raw, rtol=1e-5)
    assert (raw > clip * 1.01).any()
    assert (after <= clip + 1e-5).all()
    small = raw <= clip
    np.testing.assert_allclose(np.asarray(clipped)[small], np.asarray(grads)[small], rtol=1e-6)
    # The chunked sum keeps only the masked-in rows.
    keep = jnp.array([1, 0, 1, 1, 0, 0], bool)
    total, _ = clipped_grad_sum(prompt, student, s_cfg, tokens, mask, cands, labels, keep, clip)
    want = np.asarray(clipped)[np.asarray(keep)].sum(0)
    np.testing.assert_allclose(total, want, rtol=1e-4, atol=1e-6)


def rdp_epsilon_reference(q, sigma, steps, delta, max_order=256):
    """Independent accountant: integer-order RDP of the sampled Gaussian (Mironov, Talwar and
    Zhang 2019, eq. for integer alpha) with the classic conversion eps = T rdp + log(1/d)/(a-1)
    (the moments accountant of Abadi et al. 2016)."""
    best = math.inf
    for a in range(2, max_order + 1):
        terms = [
            math.lgamma(a + 1)
            - math.lgamma(k + 1)
            - math.lgamma(a - k + 1)
            + (a - k) * math.log1p(-q)
            + k * math.log(q)
            + (k * k - k) / (2 * sigma**2)
            for k in range(a + 1)
        ]
        m = max(terms)
        log_moment = m + math.log(sum(math.exp(t - m) for t in terms))
        best = min(best, steps * log_moment / (a - 1) + math.log(1 / delta) / (a - 1))
    return best


def test_accountant_matches_reference_values():
    q, sigma, steps, delta = 0.01, 4.0, 10_000, 1e-5
    ref = rdp_epsilon_reference(q, sigma, steps, delta)
    # Abadi et al. 2016, Sec. 3.1: q = 0.01, sigma = 4, delta = 1e-5, T = 10000 -> eps ~ 1.26.
    assert abs(ref - 1.26) < 0.01
    rdp, pld = spent_epsilon(sigma, q, steps, delta), spent_epsilon(sigma, q, steps, delta, "pld")
    # dp_accounting's RDP uses a tighter RDP -> DP conversion; PLD is tighter still.
    assert 0.75 * ref < rdp <= ref
    assert abs(pld - rdp) < 0.15 * rdp
    ref2 = rdp_epsilon_reference(q, 1.1, steps, delta)
    assert 0.75 * ref2 < spent_epsilon(1.1, q, steps, delta) <= ref2


def test_noise_multiplier_reaches_the_target():
    sigma = noise_multiplier_for(8.0, 1e-3, 0.25, 80)
    assert spent_epsilon(sigma, 0.25, 80, 1e-3) <= 8.0 < spent_epsilon(0.99 * sigma, 0.25, 80, 1e-3)
    assert noise_multiplier_for(1.0, 1e-3, 0.25, 80) > sigma


def test_dp_prompt_tuning_spends_at_most_epsilon(teacher):
    student, s_cfg = make_student(teacher, CFG)
    train = tiny_inputs(8, jax.random.key(3))
    dcfg = DPConfig(
        prompt_len=3,
        epochs=2,
        expected_batch_size=4,
        physical_batch=4,
        learning_rate=0.1,
        epsilon=8.0,
        optimizer="sgd",
        init="random",
        class_score="logsumexp",
    )
    out = dp_tune_prompt(student, s_cfg, train, train, dcfg, progress=False)
    assert out.steps == 4 and out.delta == 1 / 8 and out.noise_multiplier > 0
    assert 7.0 < out.epsilon <= 8.0
    assert out.prompt_TxD.shape == (3, CFG.hidden_size) and np.isfinite(out.prompt_TxD).all()
    plain = dp_tune_prompt(
        student,
        s_cfg,
        train,
        None,
        DPConfig(
            prompt_len=3,
            epochs=2,
            expected_batch_size=4,
            epsilon=None,
            init="random",
            class_score="logsumexp",
        ),  # fmt: skip
        progress=False,
    )
    assert plain.epsilon is None and plain.noise_multiplier == 0


# ---------------------------------------------------------------------------- transfer


def test_transfer_receives_no_private_example(teacher):
    tok, task = WordTokenizer(), get_task("sst2")
    student, s_cfg = make_student(teacher, CFG)
    prompt = np.asarray(teacher["embed"][:3])
    private = [{"id": "user-0", "sentence": "a private review", "label": 1}]
    with pytest.raises(PrivacyBoundaryError, match="private marker"):
        PublicData.from_examples(tok, task, mark_private(private), "user data")
    with pytest.raises(PrivacyBoundaryError, match="private task"):
        PublicData.from_task(tok, task, "sst2", n=4)
    with pytest.raises(PrivacyBoundaryError, match="private task"):  # an sst2 id
        PublicData.from_examples(tok, task, [{"id": "sst2-dev-0", "sentence": "x"}], "ids")
    sst2_text = "it 's a charming and often affecting journey ."  # an sst2 example
    with pytest.raises(PrivacyBoundaryError, match="text of a private task"):
        PublicData.from_texts(tok, task, [sst2_text], "copied")
    with pytest.raises(PrivacyBoundaryError, match="build PublicData"):
        PublicData(np.ones((2, 4), np.int32), np.ones((2, 4), np.int32), np.ones((2, 1)), "x")
    tcfg = TransferConfig(steps=4, batch_size=2, learning_rate=1e-2)
    user_inputs = tiny_inputs(4, jax.random.key(4))
    with pytest.raises(PrivacyBoundaryError, match="only PublicData"):
        transfer(teacher, CFG, student, s_cfg, prompt, user_inputs, tcfg)
    public = PublicData.from_task(tok, task, "ag_news", n=6)
    p_t, hist = transfer(teacher, CFG, student, s_cfg, prompt, public, tcfg, progress=False)
    assert p_t.shape == prompt.shape and len(hist) == 4 and np.isfinite(p_t).all()
    assert not np.allclose(p_t, prompt)


# ---------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors():
    for eps in (0.0, -1.0):
        with pytest.raises(ValueError, match="epsilon must be > 0"):
            noise_multiplier_for(eps, 1e-5, 0.01, 100)
    for delta in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="delta must be in"):
            noise_multiplier_for(8.0, delta, 0.01, 100)
        with pytest.raises(ValueError, match="delta must be in"):
            spent_epsilon(1.0, 0.01, 100, delta)
    with pytest.raises(ValueError, match="epsilon"):
        DPConfig(epsilon=0)
    with pytest.raises(ValueError, match="delta"):
        DPConfig(delta=1.0)
    with pytest.raises(ValueError, match="empty"):
        PublicData.from_texts(WordTokenizer(), get_task("sst2"), ["", "  "], "blank")
    with pytest.raises(ValueError, match="steps"):
        DistillConfig(steps=0)
    with pytest.raises(ValueError, match="weights"):
        DistillConfig(weights=(1.0, -1.0, 0.0))
    assert alpha_heuristic(0.75, 0.8, 0.5) == pytest.approx(5 / 6)
    assert alpha_heuristic(0.9, 0.6, 0.5) == 1.0 and alpha_heuristic(0.4, 0.6, 0.5) == 0.0
    with pytest.raises(ValueError, match="must exceed random guess"):
        alpha_heuristic(0.7, 0.5, 0.5)


def test_public_corpus_and_audit_helpers(tmp_path):
    tok = WordTokenizer()
    with pytest.raises(ValueError, match="private"):
        public_corpus(tok, ("ag_news", "sst2"))
    windows = public_corpus(tok, ("ag_news",), seq_len=16)
    assert windows.shape[1] == 16 and windows.shape[0] > 100 and (windows == 100).any()
    text = tmp_path / "public.txt"
    text.write_text("one two three four\n\nfive six seven\n")
    stream = [*tok("one two three four")["input_ids"], 100, *tok("five six seven")["input_ids"]]
    stream.append(100)  # EOS after each document; blank lines are skipped
    np.testing.assert_array_equal(corpus_from_file(text, tok, seq_len=3).ravel(), stream)
    assert corpus_from_file(text, tok, seq_len=4).shape == (2, 4)  # the ragged tail is cut
    assert auc_lower_is_member([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert auc_lower_is_member([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert auc_lower_is_member([0.9], [0.1, 0.95]) == 0.5
    assert dp_advantage_bound(8.0, 0.0) == pytest.approx((math.e**8 - 1) / (math.e**8 + 1))
