"""The POST table as the public code (sprintml/POST) runs it: a plan beside plan.py's (issue 42).

Teacher: the served model; student: the shipped one (`studies/post/student.py`, loaded by
name, never distilled here; its params digest is recorded). Per private task and seed the
task's train pool (the whole of it unless `private_size`) is split, seeded, into the private
train set and a private validation split of `val_size`; the test set is `test_size` examples
of the test pool, and the LiRA audit's non-members and shadow pool come from it as in
plan.py. Prompts are tuned as the code tunes them (dp.py, code_prompts.py): the task's init
text, several label words per class scored by their mean logit (the Inputs carry
`code_candidates`' candidates), lr 5e-4 for 5 epochs, Adam without DP and the code's
optimiser with DP (DPConfig "auto"), epsilon 8 and delta = 1/N; both with and without DP.

Rows per DP setting: the teacher zero-shot, full prompt tuning of the teacher, the student
with its prompt, Direct transfer (the teacher with the student's prompt) and POST with each
alpha of ALPHA_MODES: "paper" = min((ZS - RG) / (C - RG), 1) with ZS the teacher's zero-shot
and C the prompted student's accuracy on the PRIVATE VALIDATION split (measured outside the
DP accountant, as the paper does; the record says so in `alpha_inputs`), RG = 1 / classes;
"code" = 0.5; "public" = the public-agreement proxy (public_alpha.py, as plan.py). Transfer
runs on ag_news public texts with the teacher's accuracy on the private validation split
evaluated every `eval_every` steps (the code's interval): the record keeps the last prompt's
and the best-on-validation step's test accuracy (the best step's prompt is kept by
`BestTracker`), `best_and_last` on validation, alpha and its mode. Audits of the student
prompt: loss threshold and offline LiRA, as plan.py (scored on the task's own label words).
Each tuned or transferred prompt is one StepCache step, so a killed cell resumes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbp_jax.data.batching import make_inputs
from cbp_jax.data.splits import test_pool, train_pool
from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.records import Cell
from cbp_jax.experiment.step_cache import StepCache
from cbp_jax.model.fingerprint import params_digest
from cbp_jax.post import (
    DPConfig,
    PublicData,
    TransferConfig,
    accuracy,
    mark_private,
    transfer,
)
from cbp_jax.post.audit import subset, train_shadows
from cbp_jax.post.code_prompts import INIT_TEXT, LABEL_WORDS, code_candidates, text_init_prompt
from cbp_jax.post.public_alpha import public_alpha
from cbp_jax.post.transfer_loss import ALPHA_MODES, KL_DIRECTIONS, best_and_last, transfer_alpha
from studies.post.plan import audits, tuned
from studies.post.plan import cells as plan_cells
from studies.post.student import NAME

PUBLIC = "ag_news"
ROWS = ("zero_shot", "full", "student", "direct", *(f"post_{m}" for m in ALPHA_MODES))
ALPHA_INPUTS = "private validation, outside the accountant"


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclasses.dataclass(frozen=True)
class PublishedConfig:
    """Tasks x seeds, the private splits, the code's prompt-tuning recipe (its knobs here,
    the rest DPConfig's defaults), the DP target, the audits and the transfer."""

    tasks: tuple[str, ...] = ("sst2", "financial_phrasebank")
    seeds: tuple[int, ...] = (0, 1, 2)
    student: str = NAME  # the shipped student, by name
    private_size: int | None = None  # None: the whole train pool (split into train + val)
    val_size: int = 50
    test_size: int = 200
    audit_size: int = 50
    shadows: int = 4
    prompt_len: int = 20
    epochs: int = 5
    learning_rate: float = 5e-4
    expected_batch_size: int = 16
    physical_batch: int = 16
    epsilon: float = 8.0  # delta = 1/N (DPConfig delta None)
    transfer: TransferConfig = TransferConfig(steps=200, batch_size=8, learning_rate=1e-3)
    eval_every: int = 30
    public_size: int = 512
    out: str = "checkpoints/post_published"

    def __post_init__(self):
        if not self.tasks or not self.seeds:
            raise ValueError("need at least one task and one seed")
        unknown = [t for t in self.tasks if t not in INIT_TEXT or t not in LABEL_WORDS]
        if unknown:
            raise ValueError(f"the public code has no prompt setup for tasks {unknown}")
        size = self.private_size
        if size is not None and not (_positive_int(size) and size >= self.val_size + 2):
            raise ValueError(f"private_size must be an int >= val_size + 2 (or None), got {size!r}")
        ints = ("val_size", "test_size", "audit_size", "prompt_len", "epochs",
                "expected_batch_size", "physical_batch", "eval_every", "public_size")  # fmt: skip
        for name in ints:
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not _positive_int(self.shadows) or self.shadows < 2:
            raise ValueError(f"shadows must be an int >= 2, got {self.shadows!r}")
        if not (self.epsilon > 0 and self.learning_rate > 0):
            raise ValueError("epsilon and learning_rate must be > 0")
        if self.transfer.kl_direction != KL_DIRECTIONS[0]:
            raise ValueError("the public code's transfer loss is KL(S || T): kl_direction "
                             f"{KL_DIRECTIONS[0]!r}")  # fmt: skip

    def tune(self, dp: bool, seed: int) -> DPConfig:
        """The code's recipe: text init, mean-logit label words, optimiser "auto", delta 1/N."""
        return DPConfig(
            prompt_len=self.prompt_len, epochs=self.epochs, learning_rate=self.learning_rate,
            expected_batch_size=self.expected_batch_size, physical_batch=self.physical_batch,
            epsilon=self.epsilon if dp else None, delta=None, seed=seed,
        )  # fmt: skip


QUICK = PublishedConfig(
    tasks=("sst2",), seeds=(0,), private_size=24, val_size=8, test_size=16, audit_size=8,
    shadows=2, prompt_len=8, epochs=1, expected_batch_size=8, physical_batch=8,
    transfer=TransferConfig(steps=4, batch_size=4), eval_every=2, public_size=16,
    out="checkpoints/post_published_quick",
)  # fmt: skip

# The CPU-sized run: sst2 (its whole train pool), 3 seeds, 20-token prompts, 60 transfer steps.
CPU = dataclasses.replace(
    PublishedConfig(),
    tasks=("sst2",),
    transfer=dataclasses.replace(PublishedConfig.transfer, steps=60),
    eval_every=10,
)


def splits(cfg: PublishedConfig, task_name: str, seed: int) -> dict[str, list]:
    """{'train', 'val', 'test', 'nonmembers', 'shadow_pool'} example lists of one seed."""
    pool, held = train_pool(task_name), test_pool(task_name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 42]))
    n = len(pool) if cfg.private_size is None else min(cfg.private_size, len(pool))
    order = rng.permutation(len(pool))[:n]
    if n < cfg.val_size + 2:
        raise ValueError(f"{task_name}: {n} private examples leave < 2 after {cfg.val_size} val")
    held_order = rng.permutation(len(held))
    k = min(cfg.audit_size, len(held) // 2)
    return {
        "val": [pool[i] for i in order[: cfg.val_size]],
        "train": [pool[i] for i in order[cfg.val_size :]],
        "test": [held[i] for i in held_order[: min(cfg.test_size, len(held))]],
        "nonmembers": [held[i] for i in held_order[:k]],
        "shadow_pool": [held[i] for i in held_order[k:]],
    }


def cells(cfg: PublishedConfig) -> list[Cell]:
    """One cell per (task, seed); its payload is the whole config less tasks and seeds."""
    return plan_cells(cfg, added={})


class BestTracker:
    """`evaluate` for `transfer`: the accuracy of each evaluated prompt, remembering the
    prompt of the best one (the first of equals, as `best_and_last` picks)."""

    def __init__(self, evaluate):
        self.evaluate, self.calls = evaluate, 0
        self.best_acc, self.best_call, self.best_prompt = -np.inf, None, None

    def __call__(self, prompt_TxD) -> float:
        acc = float(self.evaluate(prompt_TxD))
        self.calls += 1
        if acc > self.best_acc:
            self.best_acc, self.best_call = acc, self.calls
            self.best_prompt = np.array(prompt_TxD, copy=True)
        return acc


def paper_alpha_inputs(zs: float, c: float, num_classes: int) -> dict:
    """The paper's alpha from ZS and C on the private validation split, RG = 1 / classes.
    Where C <= RG the formula is undefined: its limit as C falls to RG (1 if ZS > RG else
    0), noted in the result."""
    rg = 1.0 / num_classes
    out = {"zs": zs, "c": c, "rg": rg, "inputs": ALPHA_INPUTS}
    if c > rg:
        return {**out, "alpha": transfer_alpha("paper", zs=zs, c=c, rg=rg)}
    return {**out, "alpha": 1.0 if zs > rg else 0.0, "note": "C <= RG: the formula's limit"}


def _transferred(cache, key, teacher, student, s_cfg, p_s, public, tcfg, evaluate, every):
    """(last prompt, best-on-validation prompt, validation history) of one cached transfer."""

    def compute():
        tracker = BestTracker(evaluate)
        last, history = transfer(teacher.params, teacher.cfg, student, s_cfg, p_s, public, tcfg,
                                 progress=False, evaluate=tracker, eval_every=every)  # fmt: skip
        evals = [h for h in history if "acc" in h]
        steps, accs = [h["step"] for h in evals], [h["acc"] for h in evals]
        return {"last_TxD": last, "best_TxD": tracker.best_prompt, "eval_steps": steps,
                "eval_acc": accs}  # fmt: skip

    r = cache(key, compute)
    history = [{"step": int(s), "acc": float(a)} for s, a in zip(r["eval_steps"], r["eval_acc"],
                                                               strict=True)]  # fmt: skip
    return r["last_TxD"], r["best_TxD"], history


def cell(cfg: PublishedConfig, teacher, student, s_cfg, task_name: str, seed: int,
         cache: StepCache | None = None) -> dict:  # fmt: skip
    """Every row of the table, with and without DP, for one (task, seed)."""
    cache = cache or StepCache(None)
    tok, task = teacher.tokenizer, get_task(task_name)
    t_params, t_cfg = teacher.params, teacher.cfg
    ex = splits(cfg, task_name, seed)
    cands, w = code_candidates(tok, task_name)
    raw = {k: make_inputs(tok, task, mark_private(v)) for k, v in ex.items()}
    data = {k: dataclasses.replace(v, candidates_CxW=cands) for k, v in raw.items()}
    train, val, test = data["train"], data["val"], data["test"]
    n = len(train.labels_B)
    members = subset(raw["train"], np.arange(min(cfg.audit_size, n, len(ex["nonmembers"]))))
    nonmembers = subset(raw["nonmembers"], np.arange(len(members.labels_B)))
    public = PublicData.from_task(tok, task, PUBLIC, cfg.public_size, seed)
    num_classes = len(task.label_words)
    kw = {  # each model's prompt init (the task's text) and the label words' weights
        who: {"init_prompt_TxD": text_init_prompt(p["embed"], tok, task_name, cfg.prompt_len),
              "weights_CxW": w}
        for who, p in (("teacher", t_params), ("student", student))
    }  # fmt: skip

    def acc(params, p_cfg, data, prompt=None):
        return accuracy(params, p_cfg, data, prompt, weights_CxW=w)

    zs_val = acc(t_params, t_cfg, val)
    out = {
        "N": n, "val_size": len(val.labels_B), "test_size": len(test.labels_B),
        "student": cfg.student, "student_id": params_digest(student),
        "zero_shot": acc(t_params, t_cfg, test), "zero_shot_val": zs_val,
        "alpha_inputs": ALPHA_INPUTS,
        "selection": "best transfer step on private validation, outside the accountant",
    }  # fmt: skip
    for dp in (False, True):
        tag, tune = "_dp" if dp else "", cfg.tune(dp, seed)
        full = tuned(cache, "full" + tag, t_params, t_cfg, train, tune, **kw["teacher"])
        out["full" + tag] = acc(t_params, t_cfg, test, full["prompt_TxD"])
        res = tuned(cache, "student" + tag, student, s_cfg, train, tune, **kw["student"])
        p_s = res["prompt_TxD"]
        out["student" + tag] = acc(student, s_cfg, test, p_s)
        out["student_val" + tag] = c_val = acc(student, s_cfg, val, p_s)
        out["direct" + tag] = acc(t_params, t_cfg, test, p_s)
        for mode in ALPHA_MODES:
            if mode == "paper":
                a = paper_alpha_inputs(zs_val, c_val, num_classes)
            elif mode == "code":
                a = {"alpha": transfer_alpha("code")}
            else:
                a = public_alpha(t_params, t_cfg, student, s_cfg, p_s, public)
            tcfg = dataclasses.replace(cfg.transfer, alpha=a["alpha"], seed=seed)
            last, best, history = _transferred(
                cache, f"post_{mode}{tag}", teacher, student, s_cfg, p_s, public, tcfg,
                lambda p: acc(t_params, t_cfg, val, p), cfg.eval_every,
            )  # fmt: skip
            out[f"post_{mode}{tag}"] = {
                "last": acc(t_params, t_cfg, test, last),
                "best": acc(t_params, t_cfg, test, best),
                "val": best_and_last(history),
                "alpha": a["alpha"], "alpha_mode": mode, "alpha_detail": a,
            }  # fmt: skip
        shadow_pool = data["shadow_pool"]
        shadows = train_shadows(
            shadow_pool, cfg.shadows, min(n, len(shadow_pool.labels_B)),
            lambda d, k, t=tune, tag=tag: tuned(
                cache, f"shadow{k}{tag}", student, s_cfg, d,
                dataclasses.replace(t, seed=1000 + k), progress=False, **kw["student"],
            )["prompt_TxD"],
            seed,
        )  # fmt: skip
        out.update(audits(tag, student, s_cfg, p_s, members, nonmembers, shadows, dp and res))
    return out
