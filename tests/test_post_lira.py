"""POST as published: offline LiRA separates members of an overfit prompt and not those of an
unrelated one; the run's epsilon equals dp_accounting's direct computation; alpha from
public data only."""

import dp_accounting
import jax
import numpy as np
import pytest

from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.post import DPConfig, PublicData, dp_tune_prompt, make_student
from cbp_jax.post.audit import lira_audit, offline_scores, subset, tpr_at_fpr, train_shadows
from cbp_jax.post.public_alpha import public_alpha
from tests.test_post import WordTokenizer, tiny_inputs

CFG = LlamaConfig(101, 48, 80, 2, 6, 2, 8, tie_embeddings=False)


@pytest.fixture(scope="module")
def model():
    return init_params(CFG, jax.random.key(0), std=0.2)


def _overfit(model, data, seed):
    dcfg = DPConfig(prompt_len=4, epochs=40, expected_batch_size=12, physical_batch=12,
                    learning_rate=0.05, optimizer="adam", epsilon=None, seed=seed,
                    init="random", class_score="logsumexp")  # fmt: skip
    return dp_tune_prompt(model, CFG, data, None, dcfg, progress=False).prompt_TxD


def test_lira_separates_members_of_an_overfit_prompt(model):
    # random tokens with random labels: only memorisation lowers a member's loss
    pool = tiny_inputs(72, jax.random.key(5), s=8)
    members, nonmembers, shadow_pool = (
        subset(pool, range(12)),
        subset(pool, range(12, 24)),
        (subset(pool, range(24, 72))),
    )
    shadows = train_shadows(shadow_pool, 4, 12, lambda d, k: _overfit(model, d, 100 + k))
    target = _overfit(model, members, 0)
    hit = lira_audit(model, CFG, target, members, nonmembers, shadows)
    assert hit["auc"] > 0.85 and hit["shadows"] == 4, hit
    # control: a prompt trained on other data has no members among these targets
    other = _overfit(model, subset(shadow_pool, range(24, 36)), 7)
    miss = lira_audit(model, CFG, other, members, nonmembers, shadows)
    assert miss["auc"] < 0.8 and miss["auc"] < hit["auc"] - 0.15, (hit, miss)


def test_offline_scores_and_tpr_at_low_fpr():
    shadow = np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])  # mu = (1, 1), sd = (1, floor)
    s = offline_scores(np.array([1.0, 1.0]), shadow)
    np.testing.assert_allclose(s, np.log([0.5, 0.5]))
    with pytest.raises(ValueError, match=">= 2 shadow"):
        offline_scores(np.zeros(2), shadow[:1])
    non = np.arange(100.0)  # 1% FPR: one non-member (99) may lie above the threshold (98)
    assert tpr_at_fpr(np.array([98.5, 99.5, 50.0, 97.0]), non, 0.01) == 0.5
    assert tpr_at_fpr(np.array([8.5, 9.5]), non[:10], 0.01) == 0.5  # n < 100: above the max


def test_spent_epsilon_equals_dp_accounting_direct():
    student, s_cfg = make_student(init_params(CFG, jax.random.key(0), std=0.2), CFG)
    train = tiny_inputs(10, jax.random.key(3))
    dcfg = DPConfig(prompt_len=2, epochs=2, expected_batch_size=4, physical_batch=4,
                    epsilon=4.0, delta=1e-3, optimizer="sgd", init="random",
                    class_score="logsumexp")  # fmt: skip
    out = dp_tune_prompt(student, s_cfg, train, None, dcfg, progress=False)
    q = 4 / 10
    assert out.steps == round(2 / q) and out.delta == 1e-3
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(out.noise_multiplier)),
        out.steps,
    )
    direct = dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(1e-3)
    assert out.epsilon == pytest.approx(direct, rel=1e-9) and direct <= 4.0


def test_alpha_uses_public_data_only(model):
    tok, task = WordTokenizer(), get_task("sst2")
    public = PublicData.from_texts(tok, task, ["a b c", "d e", "f g h i"], "toy public")
    prompt = np.asarray(model["embed"][:3])
    got = public_alpha(model, CFG, model, CFG, None, public)
    assert got["agreement"] == 1.0 and got["alpha"] == 1.0  # same model, no prompt: agree
    got = public_alpha(model, CFG, model, CFG, prompt, public)
    assert 0 <= got["alpha"] <= 1 and 0 <= got["agreement"] <= 1
    with pytest.raises(TypeError, match="PublicData"):
        public_alpha(model, CFG, model, CFG, prompt, tiny_inputs(4, jax.random.key(0)))
