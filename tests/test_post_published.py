"""The POST table as the public code runs it (studies/post/published.py): config checks, the
best-step prompt tracking, the paper's alpha inputs, one whole cell on a tiny random teacher
(and its resume from the step cache), and table_published.md from fake records."""

from __future__ import annotations

import dataclasses
import types

import jax
import numpy as np
import pytest

from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.step_cache import StepCache
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.post import PublicData, TransferConfig, make_student, transfer
from cbp_jax.post.transfer_loss import ALPHA_MODES, best_and_last
from studies.post.published import (
    ALPHA_INPUTS,
    CPU,
    QUICK,
    ROWS,
    BestTracker,
    PublishedConfig,
    cell,
    cells,
    paper_alpha_inputs,
)
from studies.post.published_report import section
from tests.test_post import WordTokenizer

CFG = LlamaConfig(101, 48, 80, 4, 6, 2, 8, tie_embeddings=False)


@pytest.fixture(scope="module")
def teacher():
    params = init_params(CFG, jax.random.key(0), std=0.2)
    return types.SimpleNamespace(params=params, cfg=CFG, tokenizer=WordTokenizer())


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"val_size": 0}, "val_size must be a positive int"),
        ({"eval_every": 0}, "eval_every must be a positive int"),
        ({"prompt_len": 2.0}, "prompt_len must be a positive int"),
        ({"shadows": 1}, "shadows must be an int >= 2"),
        ({"private_size": 51}, "private_size must be an int >= val_size"),
        ({"private_size": True}, "private_size must be an int"),
        ({"epsilon": 0.0}, "epsilon and learning_rate"),
        ({"tasks": ("rte",)}, "no prompt setup for tasks"),
        ({"seeds": ()}, "at least one task and one seed"),
        ({"transfer": TransferConfig(kl_direction="teacher_student")}, "KL\\(S \\|\\| T\\)"),
    ],
)
def test_config_refuses_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        PublishedConfig(**bad)


def test_presets_and_the_recipe_they_tune_with():
    assert CPU.tasks == ("sst2",) and CPU.seeds == (0, 1, 2) and CPU.prompt_len == 20
    assert CPU.private_size is None and CPU.transfer.steps == 60 and CPU.eval_every == 10
    no_dp, dp = CPU.tune(False, 3), CPU.tune(True, 3)
    assert (no_dp.epsilon, no_dp.resolved_optimizer, no_dp.seed) == (None, "adam", 3)
    assert (dp.epsilon, dp.delta, dp.resolved_optimizer) == (8.0, None, "sgd")  # delta 1/N
    assert (dp.init, dp.class_score, dp.learning_rate, dp.epochs) == ("text", "mean_logit",
                                                                      5e-4, 5)  # fmt: skip
    names = [c.name for c in cells(CPU)]
    assert names == ["sst2/seed0", "sst2/seed1", "sst2/seed2"]
    assert cells(CPU)[1].config["seed"] == 1 and "tasks" not in cells(CPU)[1].config


# ---------------------------------------------------------------------------- pieces


def test_best_tracker_keeps_the_prompt_of_the_first_best_evaluation():
    accs = iter([0.5, 0.8, 0.6, 0.8, 0.7])
    tracker = BestTracker(lambda p: next(accs))
    prompts = [np.full((2, 3), i, np.float32) for i in range(5)]
    assert [tracker(p) for p in prompts] == [0.5, 0.8, 0.6, 0.8, 0.7]
    prompts[1][:] = -1  # the tracker kept a copy, not the caller's array
    np.testing.assert_array_equal(tracker.best_prompt, np.full((2, 3), 1))
    assert (tracker.best_acc, tracker.best_call, tracker.calls) == (0.8, 2, 5)


def test_best_tracker_inside_transfer_matches_best_and_last(teacher):
    student, s_cfg = make_student(teacher.params, CFG)
    public = PublicData.from_task(WordTokenizer(), get_task("sst2"), "ag_news", n=6)
    p_s = np.asarray(jax.random.normal(jax.random.key(1), (3, CFG.hidden_size)), np.float32)
    target = np.asarray(jax.random.normal(jax.random.key(2), p_s.shape), np.float32)

    def closeness(p):  # a deterministic "accuracy" that differs from step to step
        return float(1 / (1 + np.linalg.norm(np.asarray(p) - target)))

    tracker = BestTracker(closeness)
    tcfg = TransferConfig(steps=5, batch_size=2, learning_rate=0.05)
    last, history = transfer(teacher.params, CFG, student, s_cfg, p_s, public, tcfg,
                             progress=False, evaluate=tracker, eval_every=2)  # fmt: skip
    summary = best_and_last(history)
    assert tracker.calls == 3  # steps 1, 3, 5
    assert tracker.best_acc == summary["best"] and closeness(tracker.best_prompt) == summary["best"]
    assert summary["last"] == closeness(last)


def test_paper_alpha_from_validation_accuracies():
    a = paper_alpha_inputs(0.6, 0.9, 2)
    assert a["alpha"] == pytest.approx((0.6 - 0.5) / (0.9 - 0.5)) and a["inputs"] == ALPHA_INPUTS
    assert paper_alpha_inputs(0.95, 0.9, 2)["alpha"] == 1.0  # min(., 1)
    assert paper_alpha_inputs(0.2, 0.9, 3)["alpha"] == 0.0  # a teacher below chance
    low = paper_alpha_inputs(0.7, 0.4, 2)  # C <= RG: the formula's limit, noted
    assert low["alpha"] == 1.0 and "C <= RG" in low["note"]
    assert paper_alpha_inputs(0.3, 0.5, 2)["alpha"] == 0.0


# ---------------------------------------------------------------------------- one cell

TINY = dataclasses.replace(
    QUICK, private_size=14, val_size=4, test_size=8, audit_size=4, prompt_len=4,
    expected_batch_size=4, physical_batch=4, public_size=6, eval_every=2,
    transfer=TransferConfig(steps=3, batch_size=2, learning_rate=0.01),
)  # fmt: skip


def test_one_cell_on_a_tiny_teacher_and_its_resume(teacher, tmp_path):
    student, s_cfg = make_student(teacher.params, CFG)
    cache = StepCache(tmp_path)
    out = cell(TINY, teacher, student, s_cfg, "sst2", 0, cache)
    assert (out["N"], out["val_size"], out["test_size"]) == (10, 4, 8)
    assert out["alpha_inputs"] == ALPHA_INPUTS and len(out["student_id"]) == 16
    for tag in ("", "_dp"):
        for row in ROWS[1:4]:
            assert 0 <= out[row + tag] <= 1
        for mode in ALPHA_MODES:
            post = out[f"post_{mode}{tag}"]
            assert post["alpha_mode"] == mode and 0 <= post["alpha"] <= 1
            assert post["val"]["best"] >= post["val"]["last"] and post["val"]["best_step"] in (1, 3)
        assert out[f"post_code{tag}"]["alpha"] == 0.5
        assert out["lira" + tag]["shadows"] == 2 and 0 <= out["mia" + tag]["auc"] <= 1
    assert out["epsilon_spent"] <= 8.0 and out["delta"] == pytest.approx(1 / 10)
    again = StepCache(tmp_path)
    assert cell(TINY, teacher, student, s_cfg, "sst2", 0, again) == out
    assert {"full", "student_dp", "post_paper_dp", "shadow1_dp"} <= set(again.loaded)


# ---------------------------------------------------------------------------- the report


def _result(acc: float) -> dict:
    out = {"N": 386, "val_size": 50, "test_size": 200, "zero_shot": acc, "zero_shot_val": acc,
           "epsilon_spent": 7.99, "delta": 1 / 386, "sigma": 1.1, "dp_steps": 120,
           "student_id": "abc"}  # fmt: skip
    for tag in ("", "_dp"):
        for row in ("full", "student", "direct", "student_val"):
            out[row + tag] = acc
        for mode, alpha in zip(ALPHA_MODES, (0.25, 0.5, 0.75), strict=True):
            out[f"post_{mode}{tag}"] = {"last": acc, "best": acc + 0.1, "alpha": alpha}
        out["mia" + tag] = {"auc": 0.6}
        out["lira" + tag] = {"auc": 0.7, "tpr_at_fpr": 0.02, "shadows": 4}
    return out


def _records(accs: dict) -> list[dict]:
    by_name = {c.name: c for c in cells(CPU)}
    return [{"config": by_name[n].config, "result": _result(a)} for n, a in accs.items()]


def test_report_without_records_says_what_has_not_run():
    text = section(CPU, [], "cmd")
    assert "No run of this plan has a record yet." in text
    assert "Not run yet: sst2 seed 0, sst2 seed 1, sst2 seed 2." in text
    assert "private validation split, outside the DP accountant" in text


def test_report_one_seed_then_mean_and_std_over_two():
    text = section(CPU, _records({"sst2/seed1": 0.8}), "cmd")
    assert "## sst2 (seeds run: [1] of [0, 1, 2]: 1 seeds)" in text
    for word in ("0.5", "Last", "Best", "LiRA", "TPR", "selected on private validation data"):
        assert word in text
    assert "| POST, alpha 0.5 (the code's) | 80.00 | 90.00 | 80.00 | 90.00 |" in text
    assert "| Zero-shot (teacher) | 80.00 | - | - | - |" in text
    assert '"paper": 0.25/0.25; "code": 0.50/0.50; "public": 0.75/0.75' in text
    assert "| no DP | 60.00 | 70.00 | 2.00 |" in text
    assert "Not run yet: sst2 seed 0, sst2 seed 2." in text and "No run of" not in text
    text = section(CPU, _records({"sst2/seed0": 0.8, "sst2/seed2": 0.6}), "cmd")
    assert "seeds run: [0, 2] of [0, 1, 2]: 2 seeds" in text
    assert "| Direct transfer (teacher, student's prompt) | 70.00 ± 14.14 | - |" in text
    assert "| 80.00 ± 14.14 |" in text  # POST's best column
