"""The cbp study's configuration and plan: which runs, with which generator.

`SweepConfig` fixes the protocol (domains, held-out tasks, seeds, shots, budget, ...);
`generators()` names one stage-1 generator per domain plus one per held-out task (the
domain without it); `planned()` lists every `RunConfig` in the order the sweep runs them.
Nothing here loads a model or trains: study.py runs the plan and report.py reads its
results.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys

from cbp_jax.data.splits import check_proportions
from cbp_jax.data.tasks import domain_tasks
from cbp_jax.run import LEGACY_STRATEGY, RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the checkout
DOMAINS = ("financial", "medical", "commonsense")
METHODS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """shots per class (train and dev each); budget: API calls per black-box run (train +
    dev); steps_per_task: stage-1 steps per domain task (min 150); leave_one_out: tasks
    whose domain is also trained without them."""

    domains: tuple[str, ...] = DOMAINS
    # Every task of a multi-task domain, so the held-out verdict rests on no chosen subset.
    # History: copa came first; arc_easy and mmlu_medical followed (before any of their
    # held-out runs existed); the rest were added when copa turned out to be at chance for
    # every method (49 test examples), before any of their held-out runs existed.
    leave_one_out: tuple[str, ...] = tuple(
        t for d in DOMAINS if len(domain_tasks(d)) > 1 for t in domain_tasks(d)
    )
    seeds: tuple[int, ...] = (0, 1, 2)
    shots: int = 8
    kshot: str = "balanced"  # k-shot class proportions: balanced (k per class) | natural
    budget: int = 1000
    population: int = 20
    test_size: int = 200
    pt_epochs: int = 10
    bbtv2_layers: str = "0,10,20"
    steps_per_task: int = 50
    methods: tuple[str, ...] = METHODS  # a subset runs only those columns (e.g. a budget sweep)
    dev_margin: int = 0  # black-box runs keep a new ES mean only if it gains > this many dev hits
    task_vectors: bool = False  # stage 1 trains one vector per task; z0 = their mean
    permute_options: bool = False  # stage 1 shuffles multiple-choice options (label follows)
    # Plan only the held-out tasks: their leave-one-task-out CBP runs and/or BBT, by methods.
    held_out_only: bool = False
    stage1_max_len: int = 128
    out: str = "checkpoints/cbp_domains"

    def __post_init__(self):
        for d in self.domains:
            domain_tasks(d)  # raises on an unknown domain
        for t in self.leave_one_out:
            if not any(t in domain_tasks(d) for d in self.domains):
                raise ValueError(f"leave-one-out task {t!r} is in none of {self.domains}")
        if unknown := set(self.methods) - set(METHODS):
            raise ValueError(f"unknown methods {sorted(unknown)}; known: {METHODS}")
        if self.held_out_only and not (self.leave_one_out and {"bbt", "cbp"} & set(self.methods)):
            raise ValueError("held_out_only needs leave_one_out tasks and the bbt or cbp method")
        check_proportions(self.kshot)
        if min(self.shots, self.budget, self.population, self.test_size) <= 0:
            raise ValueError("shots, budget, population and test_size must be positive")

    def generators(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """name -> (domain, excluded tasks)."""
        out = {d: (d, ()) for d in self.domains}
        for t in self.leave_one_out:
            out[self.held_out_generator(t)] = (self.domain_of(t), (t,))
        return out

    def domain_of(self, task: str) -> str:
        return next(d for d in self.domains if task in domain_tasks(d))

    def held_out_generator(self, task: str) -> str:
        """Name of the generator trained on `task`'s domain without it."""
        return f"{self.domain_of(task)}-minus-{task}"

    def generator_dir(self, name: str) -> pathlib.Path:
        return ROOT / self.out / "generators" / name

    def stage1_command(
        self, domain: str, exclude: tuple[str, ...], out: pathlib.Path, seed: int = 0
    ) -> list[str]:
        """The `cbp-jax train-generator` command of this sweep's stage-1 protocol."""
        steps = max(150, self.steps_per_task * len(domain_tasks(domain, exclude)))
        cmd = [
            sys.executable, "-m", "cbp_jax.cli", "train-generator", "--domain", domain,
            "--exclude", ",".join(exclude), "--steps", str(steps),
            "--max-len", str(self.stage1_max_len), "--out", str(out),
        ]  # fmt: skip
        cmd += ["--task-vectors"] if self.task_vectors else []
        cmd += ["--permute-options"] if self.permute_options else []
        cmd += ["--seed", str(seed)] if seed else []
        return cmd


@functools.cache
def _test_pool_size(task: str) -> int:
    from cbp_jax.data.splits import test_pool

    return len(test_pool(task))


def _small_pools(cfg: SweepConfig) -> str:
    """' (copa: its whole 49-example test pool)' for the tasks whose pool is smaller."""
    tasks = [t for d in cfg.domains for t in domain_tasks(d)]
    small = [
        f"{t}: its whole {n}-example test pool"
        for t in tasks
        if (n := _test_pool_size(t)) < cfg.test_size
    ]
    return f" ({'; '.join(small)})" if small else ""


def run_config(cfg: SweepConfig, task: str, method: str, seed: int, gen: str = "") -> RunConfig:
    return RunConfig(
        task=task,
        method=method,
        seed=seed,
        shots=cfg.shots,
        kshot=cfg.kshot,
        budget=cfg.budget,
        population=cfg.population,
        test_size=min(cfg.test_size, _test_pool_size(task)),  # copa's pool has 49
        pt_epochs=cfg.pt_epochs,
        bbtv2_layers=cfg.bbtv2_layers,
        dev_margin=cfg.dev_margin,
        generator=str(cfg.generator_dir(gen) / "generator") if gen else "",
        tag=gen,
        out=str(ROOT / cfg.out / "runs"),
        strategy=LEGACY_STRATEGY,  # what its committed records ran with
    )


def cell_name(rc: RunConfig) -> str:
    """A planned run's record name: task/method[-generator]/seed<seed>."""
    return f"{rc.task}/{rc.method}{'-' + rc.tag if rc.tag else ''}/seed{rc.seed}"


def portable(rc: RunConfig) -> RunConfig:
    """`rc` with its paths relative to the repository root (a record's config, any clone)."""
    rel = {f: str(pathlib.Path(v).relative_to(ROOT)) for f in ("out", "generator")
           if (v := getattr(rc, f)) and pathlib.Path(v).is_relative_to(ROOT)}  # fmt: skip
    return dataclasses.replace(rc, **rel)


def absolute(rc: RunConfig) -> RunConfig:
    """`rc` with its repo-relative paths made absolute (to run it from any directory)."""
    gen = str(ROOT / rc.generator) if rc.generator else ""
    return dataclasses.replace(rc, out=str(ROOT / rc.out), generator=gen)


# One task per domain first, then cheapest (shortest inputs) first, so a sweep cut short
# still fills whole rows.
PRIORITY = (
    "financial_phrasebank", "copa", "mmlu_medical", "arc_easy", "piqa", "arc_challenge",
    "boolq", "medqa_usmle", "pubmedqa",
)  # fmt: skip


def planned(cfg: SweepConfig, tasks: tuple[str, ...] = ()) -> list[RunConfig]:
    """Every run, tasks in PRIORITY order: first zero-shot, BBT and CBP (in-domain and
    held-out) on every task, then BBTv2 and white-box PT (the headline comparison first)."""
    domain_of = {t: d for d in cfg.domains for t in domain_tasks(d)}
    order = [t for t in PRIORITY if t in domain_of] + [t for t in domain_of if t not in PRIORITY]
    order = [t for t in order if not tasks or t in tasks]
    rows = []
    if cfg.held_out_only:
        for task in order:
            if task in cfg.leave_one_out:
                held = cfg.held_out_generator(task)
                if "bbt" in cfg.methods:
                    rows += [run_config(cfg, task, "bbt", seed) for seed in cfg.seeds]
                if "cbp" in cfg.methods:
                    rows += [run_config(cfg, task, "cbp", seed, held) for seed in cfg.seeds]
        return rows
    for methods in (("zero_shot", "bbt", "cbp"), ("bbtv2", "prompt_tuning")):
        for task in order:
            domain = domain_of[task]
            for method in (m for m in methods if m in cfg.methods):
                gen = domain if method == "cbp" else ""
                rows += [run_config(cfg, task, method, seed, gen) for seed in cfg.seeds]
            if task in cfg.leave_one_out and "cbp" in methods and "cbp" in cfg.methods:
                held = cfg.held_out_generator(task)
                if "cbp" in cfg.methods:
                    rows += [run_config(cfg, task, "cbp", seed, held) for seed in cfg.seeds]
    return rows
