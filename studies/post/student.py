"""The POST study's shipped student: distilled once, measured, shipped under checkpoints/shipped.

    cbp-jax study post student --steps 600     # distil (resumes, extends), measure, ship
    cbp-jax study post student --measure-only  # measure a checkpoint without shipping

The student keeps the teacher's first two and last two blocks, as POST's code does for a
decoder teacher (distill/extract_distill_model.py: GPT-2 XL keeps h[0:2] + h[-2:]), and
trains them and the final norm on public text (the shipped public tasks' train pools, never
sst2 or financial_phrasebank) with KD + LM + cosine losses (cbp_jax.post.distill), lr 5e-4
(the code's). Its embeddings stay the teacher's, so it ships as its blocks in bfloat16 with a
SHA256 (`shipped_student`). Measured once shipped: the teacher's zero-shot accuracy and the
student with a soft prompt tuned as POST's code tunes it (task-text init, several label words,
Adam 5e-4, 5 epochs, no DP) on sst2's whole train pool, on 200 sst2 test examples, with the
shipped bf16 weights reloaded by name (`--measure-only`: the float32 checkpoint, unshipped).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from cbp_jax.post.distill import DistillConfig

TEACHER = "smollm2-135m"
NAME = f"{TEACHER}-post-student"
PUBLIC = ("ag_news", "boolq", "piqa", "arc_easy", "arc_challenge", "copa")
CONFIG = DistillConfig(
    layers=(0, 1, 28, 29), steps=600, batch_size=8, seq_len=128, learning_rate=5e-4,
    checkpoint_every=25, freeze_embeddings=True,
)  # fmt: skip
PROMPT_LEN, TEST_SIZE, PROBE_TASK = 20, 200, "sst2"
SHIPPED = pathlib.Path("checkpoints/shipped")


def sst2_probe(teacher):
    """(train Inputs, test Inputs, init prompt fn, label-word weights) of the measurement."""
    from cbp_jax.data.batching import make_inputs
    from cbp_jax.data.splits import test_pool, train_pool
    from cbp_jax.data.tasks import get_task
    from cbp_jax.post import mark_private
    from cbp_jax.post.code_prompts import code_candidates

    tok, task = teacher.tokenizer, get_task(PROBE_TASK)
    rng = np.random.default_rng(0)
    held = test_pool(PROBE_TASK)
    test = [held[i] for i in rng.permutation(len(held))[:TEST_SIZE]]
    cands, weights = code_candidates(tok, PROBE_TASK)
    train_in, test_in = (
        dataclasses.replace(make_inputs(tok, task, mark_private(x)), candidates_CxW=cands)
        for x in (train_pool(PROBE_TASK), test)
    )
    return train_in, test_in, weights


def measure(teacher, student, s_cfg) -> dict:
    """Zero-shot (teacher) and student + code-recipe prompt accuracy on the sst2 probe."""
    from cbp_jax.post import DPConfig, dp_tune_prompt
    from cbp_jax.post.audit import accuracy
    from cbp_jax.post.code_prompts import text_init_prompt

    train_in, test_in, w = sst2_probe(teacher)
    tune = DPConfig(prompt_len=PROMPT_LEN, epsilon=None, physical_batch=16)
    init = text_init_prompt(student["embed"], teacher.tokenizer, PROBE_TASK, PROMPT_LEN)
    t0 = time.time()
    tuned = dp_tune_prompt(student, s_cfg, train_in, None, tune, progress=False,
                           init_prompt_TxD=init, weights_CxW=w)  # fmt: skip
    return {
        "probe": f"{PROBE_TASK}: prompt tuned on the {len(train_in.labels_B)}-example train "
        f"pool ({PROMPT_LEN} tokens, Adam 5e-4, 5 epochs, no DP), {TEST_SIZE} test examples",
        "teacher_zero_shot": accuracy(teacher.params, teacher.cfg, test_in, weights_CxW=w),
        "student_init_prompt": accuracy(student, s_cfg, test_in, init, weights_CxW=w),
        "student_prompt": accuracy(student, s_cfg, test_in, tuned.prompt_TxD, weights_CxW=w),
        "prompt_seconds": round(time.time() - t0, 1),
    }


def probe_teacher(out: pathlib.Path) -> dict:
    """The student's probe run on the teacher itself (its blocks as the "student"): does the
    code's prompt recipe lift a model this size above zero-shot at all? Written to `out`."""
    from cbp_jax.experiment.identity import git_commit
    from cbp_jax.model import load_model
    from cbp_jax.model.precision import machine_info

    teacher = load_model(TEACHER)
    probe = measure(teacher, teacher.params, teacher.cfg)  # the teacher in the student's place
    result = {k.replace("student_", "teacher_"): v for k, v in probe.items()}
    result = {"model": TEACHER, **result, "commit": git_commit(), **machine_info()}
    result["command"] = "cbp-jax study post student --teacher"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result), flush=True)
    return result


def main(steps: int, out: str, root: str, measure_only: bool) -> dict:
    from cbp_jax.model import load_model
    from cbp_jax.post import distill, public_corpus
    from cbp_jax.post.shipped_student import load_student, save_student

    teacher = load_model(TEACHER)
    cfg = dataclasses.replace(CONFIG, steps=steps)
    corpus = public_corpus(teacher.tokenizer, PUBLIC, cfg.seq_len)
    t0 = time.time()
    result = distill(teacher.params, teacher.cfg, corpus, cfg, pathlib.Path(out) / NAME)
    seconds = time.time() - t0
    tail = result.history[-25:]
    summary = {
        "steps": cfg.steps,
        "corpus": f"{len(corpus)} windows of {cfg.seq_len} tokens from {', '.join(PUBLIC)}",
        "seconds_this_session": round(seconds),
        "last_25_steps_mean": {
            k: float(np.mean([h[k] for h in tail])) for k in tail[0] if k != "step"
        },  # fmt: skip
    }
    if measure_only:
        summary |= measure(teacher, result.params, result.cfg)
        print(summary, flush=True)
        return summary
    directory = pathlib.Path(root) / NAME
    sha = save_student(directory, result.params, teacher, cfg, cfg.layers, summary)
    shipped, s_cfg = load_student(directory, teacher)  # measured as shipped: bf16, by name
    summary["shipped_bf16"] = measure(teacher, shipped, s_cfg)
    save_student(directory, result.params, teacher, cfg, cfg.layers, summary)
    print(f"shipped {directory} sha256 {sha}: {summary}", flush=True)
    return summary
