"""POST's transfer loss and weight as the public code runs them: KL(S || T) at tau = 2 with the
tau^2 factor (torch's KLDivLoss(log_softmax(T/tau), softmax(S/tau)), checked by hand and
against torch), both terms mixed by alpha, the paper's alpha formula, and the last and best
accuracy over transfer steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.post import PublicData, TransferConfig, make_student, transfer
from cbp_jax.post.transfer_loss import (
    best_and_last,
    kl_batchmean,
    kl_term,
    mix_loss,
    paper_alpha,
    transfer_alpha,
)

T_BxV = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)  # teacher logits
S_BxV = np.array([[0.0, 2.0, 1.0], [1.5, -1.0, 0.5]], np.float32)  # student logits


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hand_kl(p_logits, q_logits, tau):
    """tau^2 * mean over rows of sum p log(p / q), p = softmax(p_logits / tau), in float64."""
    p, q = _softmax(p_logits.astype(np.float64) / tau), _softmax(q_logits.astype(np.float64) / tau)
    return tau**2 * (p * np.log(p / q)).sum(-1).mean()


def test_transfer_kl_is_student_to_teacher_at_tau_2():
    want = _hand_kl(S_BxV, T_BxV, 2.0)  # KL(S || T)
    reverse = _hand_kl(T_BxV, S_BxV, 2.0)  # KL(T || S)
    got = float(kl_term(jnp.asarray(T_BxV), jnp.asarray(S_BxV), 2.0))
    assert got == pytest.approx(want, rel=1e-5)
    assert abs(want - reverse) > 0.05  # the two directions differ on these logits
    back = float(kl_term(jnp.asarray(T_BxV), jnp.asarray(S_BxV), 2.0, "teacher_student"))
    assert back == pytest.approx(reverse, rel=1e-5) and abs(back - got) > 0.05
    with pytest.raises(ValueError, match="KL direction"):
        kl_term(T_BxV, S_BxV, 2.0, "symmetric")


def test_kl_batchmean_matches_torch_kldivloss():
    torch = pytest.importorskip("torch")
    t, s = torch.tensor(T_BxV), torch.tensor(S_BxV)
    loss = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.nn.functional.log_softmax(t / 2.0, dim=-1),
        torch.nn.functional.softmax(s / 2.0, dim=-1),
    ) * (2.0**2)  # fmt: skip  -- utils/transfer.py, mix_transfer's loss2
    got = float(kl_term(jnp.asarray(T_BxV), jnp.asarray(S_BxV), 2.0))
    assert got == pytest.approx(float(loss), rel=1e-5)
    p = jnp.asarray([[1.0, 0.0]])  # 0 log 0 = 0, as torch
    assert float(kl_batchmean(jnp.log(jnp.asarray([[0.5, 0.5]])), p)) == pytest.approx(np.log(2))


def test_mix_loss_weights_both_terms():
    rng = np.random.default_rng(0)
    t_p, t_0, s_p, s_0 = (jnp.asarray(rng.normal(size=(3, 7)), jnp.float32) for _ in range(4))
    effect = _hand_kl(np.asarray(s_p - s_0), np.asarray(t_p - t_0), 2.0)  # loss1
    output = _hand_kl(np.asarray(s_p), np.asarray(t_p), 2.0)  # loss2
    for alpha in (0.0, 0.5, 1.0, 0.17):
        got = float(mix_loss(t_p, t_0, s_p, s_0, alpha))
        assert got == pytest.approx(alpha * effect + (1 - alpha) * output, rel=1e-5)
    assert abs(effect - output) > 1e-3  # alpha matters


def test_paper_alpha_formula():
    assert paper_alpha(0.715, 0.54, 0.5) == 1.0  # this project's figures: (0.215 / 0.04) -> 1
    assert paper_alpha(0.75, 0.8, 0.5) == pytest.approx(5 / 6)  # (0.25 / 0.3)
    assert paper_alpha(0.6, 0.9, 1 / 3) == pytest.approx((0.6 - 1 / 3) / (0.9 - 1 / 3))
    assert paper_alpha(0.4, 0.6, 0.5) == 0.0  # a teacher below chance: clipped at 0
    with pytest.raises(ValueError, match="must exceed random guess"):
        paper_alpha(0.7, 0.5, 0.5)
    with pytest.raises(ValueError, match="accuracy in"):
        paper_alpha(71.5, 0.54, 0.5)  # percentages refused
    assert transfer_alpha("paper", zs=0.715, c=0.54, rg=0.5) == 1.0
    assert transfer_alpha("code") == 0.5 and transfer_alpha("public", proxy=0.17) == 0.17
    with pytest.raises(ValueError, match="zs, c and rg"):
        transfer_alpha("paper", zs=0.7)
    with pytest.raises(ValueError, match="alpha mode"):
        transfer_alpha("heuristic")
    assert TransferConfig().alpha == 0.5 and TransferConfig().temperature == 2.0
    assert TransferConfig().kl_direction == "student_teacher"
    with pytest.raises(ValueError, match="kl_direction"):
        TransferConfig(kl_direction="sym")


def test_best_and_last_over_evaluated_steps():
    hist = [
        {"step": 1, "loss": 3.0, "acc": 0.5},
        {"step": 2, "loss": 2.0},  # fmt: skip
        {"step": 31, "loss": 1.0, "acc": 0.8},
        {"step": 40, "loss": 0.9, "acc": 0.7},
    ]
    assert best_and_last(hist) == {"last": 0.7, "best": 0.8, "best_step": 31}
    with pytest.raises(ValueError, match="no evaluated steps"):
        best_and_last([{"step": 1, "loss": 1.0}])


class WordTokenizer:
    pad_token_id, eos_token_id = 0, 100

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [sum(map(ord, w)) % 99 + 1 for w in text.split()]}


def test_transfer_evaluates_at_the_codes_interval_and_the_last_step():
    cfg = LlamaConfig(101, 48, 80, 4, 6, 2, 8, tie_embeddings=False)
    teacher = init_params(cfg, jax.random.key(0), std=0.2)
    student, s_cfg = make_student(teacher, cfg, (0, 3))
    public = PublicData.from_task(WordTokenizer(), get_task("sst2"), "ag_news", n=6)
    prompt = np.asarray(teacher["embed"][:3])
    seen = []

    def evaluate(p_t):
        seen.append(p_t.copy())
        return float(len(seen)) / 10

    tcfg = TransferConfig(steps=7, batch_size=2, learning_rate=1e-2)
    p_t, hist = transfer(teacher, cfg, student, s_cfg, prompt, public, tcfg, False, evaluate, 3)
    assert [h["step"] for h in hist if "acc" in h] == [1, 4, 7]  # step % 3 == 1, and the last
    np.testing.assert_array_equal(seen[-1], p_t)
    assert best_and_last(hist) == {"last": 0.3, "best": 0.3, "best_step": 7}
    with pytest.raises(ValueError, match="eval_every"):
        transfer(teacher, cfg, student, s_cfg, prompt, public, tcfg, False, evaluate, 0)
