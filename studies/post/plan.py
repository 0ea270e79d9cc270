"""The POST study's plan: its config and the runs of one (task, seed) (markdown: report.py).

Teacher: the served model; the student (first + last block) is distilled on public text
(study.py does that once and passes both in). Per private task and seed
the user's private set is `private_size` examples of the task's train pool (None: the whole
pool); prompts are tuned by `dp_tune_prompt` with the recorded optimiser (SGD, lr 1e-3, 20
epochs; the same Poisson batches with and without DP; DP at epsilon and delta =
delta_factor / N < 1/N). No private data is used outside the accountant: the last prompt is
released (no dev selection) and alpha comes from public inputs only (`public_alpha`). The
student's prompt is evaluated on the student, on the teacher as is (Direct transfer) and
after POST transfer with each public set. Audits on the student prompt: the loss-threshold
attack and offline LiRA with `shadows` shadow prompts trained by the same algorithm on
test-pool examples that are not audit targets. One experiment-layer cell per (task, seed),
its config the whole table config.

This plan's committed records ran the transfer loss as KL(T || S) and tuned the private
prompts with SGD at 1e-3 for 20 epochs from random tokens with one label word per class; the
public code runs KL(S || T) (transfer_loss.py) and Adam at 5e-4 for 5 epochs from the task
text with several label words (dp.py, code_prompts.py). The plan keeps what its records ran,
pinned in its configs (the fields added since are left out of a cell's config at those
values, ADDED_FIELDS, so the records keep matching), so the table still says what ran; a
rerun as the code runs it is another plan.
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
    DistillConfig,
    DPConfig,
    PublicData,
    TransferConfig,
    accuracy,
    dp_tune_prompt,
    loss_threshold_mia,
    mark_private,
    transfer,
)
from cbp_jax.post.audit import lira_audit, subset, train_shadows
from cbp_jax.post.public_alpha import public_alpha

PUBLIC_SETS = ("ag_news", "boolq")
ROWS = ("zero_shot", "full", "student", "direct", *(f"post_{p}" for p in PUBLIC_SETS))
LABELS = {
    "zero_shot": "Zero-shot (teacher)",
    "full": "Full prompt tuning (teacher)",
    "student": "Prompt tuned on student (on student)",
    "direct": "Direct transfer",
    **{f"post_{p}": f"POST, public {p}" for p in PUBLIC_SETS},
}


@dataclasses.dataclass(frozen=True)
class PostTableConfig:
    """The table: tasks x seeds, the private-set size, DP target, audits and the three
    POST stages' configs (distillation, prompt tuning, transfer)."""

    tasks: tuple[str, ...] = ("sst2", "financial_phrasebank")
    seeds: tuple[int, ...] = (0, 1, 2)
    private_size: int | None = None  # None: the whole train pool
    test_size: int = 300
    audit_size: int = 100
    shadows: int = 8
    epsilon: float = 8.0
    delta_factor: float = 0.1  # delta = delta_factor / N
    distill: DistillConfig = DistillConfig(  # its records trained every student parameter
        steps=2000, batch_size=8, seq_len=128, freeze_embeddings=False
    )
    tune: DPConfig = DPConfig(  # what its records ran: SGD, lr 1e-3, 20 epochs, 100 tokens,
        prompt_len=100, epochs=20, expected_batch_size=16, physical_batch=8,  # random init,
        learning_rate=1e-3, optimizer="sgd", init="random", class_score="logsumexp",  # 1 word
    )  # fmt: skip
    transfer: TransferConfig = TransferConfig(  # the direction its records ran with (above)
        steps=300, batch_size=8, learning_rate=3e-3, kl_direction="teacher_student"
    )
    public_size: int = 512
    out: str = "checkpoints/post"

    def __post_init__(self):
        if not self.tasks or not self.seeds or not self.epsilon > 0:
            raise ValueError("need tasks, seeds and epsilon > 0")
        if not 0 < self.delta_factor < 1:
            raise ValueError("delta_factor must be in (0, 1): delta below 1/N")
        size = self.private_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 2):
            raise ValueError(
                f"private_size must be an int >= 2 (or None: the whole pool), got {size!r}"
            )
        if self.audit_size < 1 or self.shadows < 2:
            raise ValueError("audit_size must be >= 1 and shadows >= 2")


QUICK = PostTableConfig(
    tasks=("sst2",),
    seeds=(0,),
    private_size=16,
    test_size=32,
    audit_size=8,
    shadows=2,
    distill=DistillConfig(
        steps=10, batch_size=2, seq_len=64, checkpoint_every=5, freeze_embeddings=False
    ),
    tune=DPConfig(
        prompt_len=10,
        epochs=2,
        expected_batch_size=8,
        physical_batch=8,
        learning_rate=1e-3,
        optimizer="sgd",
        init="random",
        class_score="logsumexp",
    ),
    transfer=TransferConfig(
        steps=4, batch_size=4, learning_rate=3e-3, kl_direction="teacher_student"
    ),
    public_size=16,
    out="checkpoints/post_quick",
)

# The CPU-sized run (2 cores: about 1-2 h per task and seed): the recorded optimiser and
# epochs (above), the paper's epsilon and a delta below 1/N, on 200 private examples,
# 20-token prompts, 4 LiRA shadows and 300 distillation steps.
REDUCED = dataclasses.replace(
    PostTableConfig(),
    private_size=200,
    test_size=200,
    shadows=4,
    audit_size=50,
    tune=dataclasses.replace(PostTableConfig.tune, prompt_len=20),
    distill=dataclasses.replace(PostTableConfig.distill, steps=300),
    transfer=dataclasses.replace(PostTableConfig.transfer, steps=40),
)


def private_and_held_out(cfg: PostTableConfig, task_name: str, seed: int):
    """(private set, test set, audit non-members, shadow pool) as example lists."""
    pool, held = train_pool(task_name), test_pool(task_name)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
    n = len(pool) if cfg.private_size is None else min(cfg.private_size, len(pool))
    private = [pool[i] for i in rng.permutation(len(pool))[:n]]
    order = rng.permutation(len(held))
    k = min(cfg.audit_size, len(held) // 2)
    test = [held[i] for i in order[: min(cfg.test_size, len(held))]]
    return private, test, [held[i] for i in order[:k]], [held[i] for i in order[k:]]


# config fields added after this plan's records ran, at the value those runs had
ADDED_FIELDS = {
    "distill": {"freeze_embeddings": False},
    "transfer": {"kl_direction": "teacher_student"},
    "tune": {"init": "random", "class_score": "logsumexp"},
}


def cells(cfg, added: dict = ADDED_FIELDS) -> list[Cell]:
    """One cell per (task, seed); its payload is the whole config less tasks and seeds (and
    less the fields of `added` at their recorded value)."""
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("tasks", "seeds")}
    for part, fields in added.items():
        base[part] = {k: v for k, v in base[part].items() if fields.get(k, object()) != v}
    return [Cell(f"{t}/seed{s}", {**base, "task": t, "seed": s})
            for t in cfg.tasks for s in cfg.seeds]  # fmt: skip


def tuned(cache: StepCache, key: str, params, cfg, train, tune: DPConfig, **kw) -> dict:
    """dp_tune_prompt's prompt and accounting (nan where there is no DP), one cached step."""

    def compute():
        r = dp_tune_prompt(params, cfg, train, None, tune, **kw)
        nan = float("nan")
        return {
            "prompt_TxD": r.prompt_TxD,
            "noise_multiplier": r.noise_multiplier,
            "epsilon": nan if r.epsilon is None else r.epsilon,
            "delta": nan if r.delta is None else r.delta,
            "steps": r.steps,
        }

    return cache(key, compute)


def cell(cfg: PostTableConfig, teacher, student, s_cfg, task_name: str, seed: int,
         cache: StepCache | None = None) -> dict:  # fmt: skip
    """Every row of the table, with and without DP, for one (task, seed). Each prompt it
    tunes or transfers is a step of `cache` (a killed cell resumes after its last one)."""
    cache = cache or StepCache(None)
    tok, task = teacher.tokenizer, get_task(task_name)
    private, test_ex, non_ex, shadow_ex = private_and_held_out(cfg, task_name, seed)
    train, test, nonmembers, shadow_pool = (
        make_inputs(tok, task, mark_private(x)) for x in (private, test_ex, non_ex, shadow_ex)
    )
    n = len(private)
    members = subset(train, np.arange(min(cfg.audit_size, n, len(non_ex))))
    nonmembers = subset(nonmembers, np.arange(len(members.labels_B)))
    t_params, t_cfg = teacher.params, teacher.cfg
    publics = {p: PublicData.from_task(tok, task, p, cfg.public_size, seed) for p in PUBLIC_SETS}
    out = {"zero_shot": accuracy(t_params, t_cfg, test), "N": n}
    out["student_id"] = params_digest(student)  # a re-distilled student is another student
    for dp in (False, True):
        tag = "_dp" if dp else ""
        tune = dataclasses.replace(
            cfg.tune,
            epsilon=cfg.epsilon if dp else None,
            delta=cfg.delta_factor / n if dp else None,
            seed=seed,
        )
        full = tuned(cache, "full" + tag, t_params, t_cfg, train, tune)["prompt_TxD"]
        out["full" + tag] = accuracy(t_params, t_cfg, test, full)
        res = tuned(cache, "student" + tag, student, s_cfg, train, tune)
        p_s = res["prompt_TxD"]
        out["student" + tag] = accuracy(student, s_cfg, test, p_s)
        out["direct" + tag] = accuracy(t_params, t_cfg, test, p_s)
        for name, public in publics.items():
            a = public_alpha(t_params, t_cfg, student, s_cfg, p_s, public)
            tcfg = dataclasses.replace(cfg.transfer, alpha=a["alpha"], seed=seed)
            p_t = cache(
                f"post_{name}{tag}",
                lambda public=public, tcfg=tcfg, p_s=p_s: {
                    "prompt_TxD": transfer(t_params, t_cfg, student, s_cfg, p_s, public, tcfg)[0]
                },
            )["prompt_TxD"]
            out[f"post_{name}" + tag] = accuracy(t_params, t_cfg, test, p_t)
            out[f"alpha_{name}" + tag] = a
        shadows = train_shadows(
            shadow_pool,
            cfg.shadows,
            min(n, len(shadow_ex)),
            lambda d, k, t=tune, tag=tag: tuned(
                cache,
                f"shadow{k}{tag}",
                student,
                s_cfg,
                d,
                dataclasses.replace(t, seed=1000 + k),
                progress=False,
            )["prompt_TxD"],
            seed,
        )
        out.update(audits(tag, student, s_cfg, p_s, members, nonmembers, shadows, dp and res))
    return out


def audits(tag, student, s_cfg, p_s, members, nonmembers, shadows, dp_result=None) -> dict:
    """The student prompt's loss-threshold and LiRA audits (keys tagged) and, given the DP
    tuning's result, its accounting (spent epsilon, delta, noise multiplier, steps)."""
    out = {
        "mia" + tag: loss_threshold_mia(student, s_cfg, p_s, members, nonmembers),
        "lira" + tag: lira_audit(student, s_cfg, p_s, members, nonmembers, shadows),
    }
    if dp_result:
        out.update(
            epsilon_spent=float(dp_result["epsilon"]),
            delta=float(dp_result["delta"]),
            sigma=float(dp_result["noise_multiplier"]),
            dp_steps=int(dp_result["steps"]),
        )
    return out
