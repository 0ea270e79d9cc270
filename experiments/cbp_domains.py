"""CBP-Tuning per domain: stage-1 generators, then every method on every task, as tables.

    python experiments/cbp_domains.py all          # train, run, write the tables
    python experiments/cbp_domains.py train        # stage 1 only (one generator per domain,
                                                   #   plus one per leave-one-task-out task;
                                                   #   `all` and `run` train each generator
                                                   #   when its first run is due)
    python experiments/cbp_domains.py run --tasks copa,arc_easy
    python experiments/cbp_domains.py table        # tables + plot from finished runs only

For each domain (METHODS.md: commonsense, medical, financial) a generator is trained on the
TRAIN pools of the domain's tasks (`cbp-jax train-generator`); for each leave-one-out task
X another generator is trained on the domain without X. Then, per task and seed, zero-shot,
BBT, BBTv2, white-box prompt tuning and CBP (stage 2 from z0; the same run reports z0's
accuracy without stage 2) run through `cbp_jax.run.run` at the same API budget. Every run
resumes from its checkpoint or is read back from its result.json, so an interrupted sweep
continues where it stopped. `table` writes experiments/results/cbp.md (mean and std over
seeds, per task and per domain average, with the commands) and cbp_vs_bbt.png (dev accuracy
of the ES mean against API calls). A cell whose runs did not all finish says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import shlex
import subprocess
import sys

import numpy as np

from cbp_jax.data.splits import check_proportions
from cbp_jax.data.tasks import domain_tasks
from cbp_jax.overrides import apply_overrides
from cbp_jax.run import RunConfig, run
from cbp_jax.stats import paired_summary

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
DOMAINS = ("financial", "medical", "commonsense")
METHODS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp")
COLUMNS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp_z0", "cbp")
LABELS = {
    "zero_shot": "zero-shot",
    "bbt": "BBT",
    "bbtv2": "BBTv2",
    "prompt_tuning": "white-box PT",
    "cbp_z0": "CBP z0 only",
    "cbp": "CBP",
}


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
    # Plan only the held-out tasks: their leave-one-task-out CBP runs, and BBT if in methods.
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
        if self.held_out_only and not (self.leave_one_out and "cbp" in self.methods):
            raise ValueError("held_out_only needs leave_one_out tasks and the cbp method")
        check_proportions(self.kshot)
        if min(self.shots, self.budget, self.population, self.test_size) <= 0:
            raise ValueError("shots, budget, population and test_size must be positive")

    def generators(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """name -> (domain, excluded tasks)."""
        out = {d: (d, ()) for d in self.domains}
        for t in self.leave_one_out:
            d = next(d for d in self.domains if t in domain_tasks(d))
            out[f"{d}-minus-{t}"] = (d, (t,))
        return out

    def generator_dir(self, name: str) -> pathlib.Path:
        return ROOT / self.out / "generators" / name


def train(cfg: SweepConfig, names: tuple[str, ...] = ()) -> None:
    """Stage 1 for the named generators (default: all), skipping finished ones."""
    for name, (domain, exclude) in cfg.generators().items():
        if names and name not in names:
            continue
        if (cfg.generator_dir(name) / "generator" / "meta.json").exists():
            continue
        steps = max(150, cfg.steps_per_task * len(domain_tasks(domain, exclude)))
        cmd = [
            sys.executable, "-m", "cbp_jax.cli", "train-generator", "--domain", domain,
            "--exclude", ",".join(exclude), "--steps", str(steps),
            "--max-len", str(cfg.stage1_max_len), "--out", str(cfg.generator_dir(name)),
        ]  # fmt: skip
        cmd += ["--task-vectors"] if cfg.task_vectors else []
        cmd += ["--permute-options"] if cfg.permute_options else []
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)


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
    )


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
                held = f"{domain_of[task]}-minus-{task}"
                if "bbt" in cfg.methods:
                    rows += [run_config(cfg, task, "bbt", seed) for seed in cfg.seeds]
                rows += [run_config(cfg, task, "cbp", seed, held) for seed in cfg.seeds]
        return rows
    for methods in (("zero_shot", "bbt", "cbp"), ("bbtv2", "prompt_tuning")):
        for task in order:
            domain = domain_of[task]
            for method in (m for m in methods if m in cfg.methods):
                gen = domain if method == "cbp" else ""
                rows += [run_config(cfg, task, method, seed, gen) for seed in cfg.seeds]
            if task in cfg.leave_one_out and "cbp" in methods and "cbp" in cfg.methods:
                held = f"{domain}-minus-{task}"
                rows += [run_config(cfg, task, "cbp", seed, held) for seed in cfg.seeds]
    return rows


def run_all(cfg: SweepConfig, tasks: tuple[str, ...] = ()) -> None:
    from cbp_jax.model import load_model

    model = load_model("smollm2-135m")
    todo = [rc for rc in planned(cfg, tasks) if not (rc.run_dir / "result.json").exists()]
    print(f"{len(todo)} runs to do", flush=True)
    for i, rc in enumerate(todo):
        if rc.tag:
            train(cfg, (rc.tag,))  # each generator is trained when its first run is due
        print(f"[{i + 1}/{len(todo)}] {rc.task} {rc.method} {rc.tag} seed {rc.seed}", flush=True)
        res = run(rc, progress=False, model=model)
        print(f"    test {res['test_acc']:.4f}  [{res['seconds']:.0f}s]", flush=True)


def _read(rc: RunConfig) -> dict | None:
    path = rc.run_dir / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def _cell(values: list[float], expected: int) -> str:
    if not values:
        return "not run"
    text = f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"
    return text if len(values) == expected else f"{text} ({len(values)}/{expected} seeds)"


def _finished(cfg: SweepConfig, task: str, method: str, gen: str) -> list[dict]:
    """result.json of every finished seed of one cell (gen: the generator, CBP only)."""
    runs = (
        _read(run_config(cfg, task, method, s, gen if method == "cbp" else "")) for s in cfg.seeds
    )
    return [r for r in runs if r is not None]


def _values(cfg: SweepConfig, task: str, column: str, gen: str) -> list[float]:
    method, key = ("cbp", "test_acc_z0") if column == "cbp_z0" else (column, "test_acc")
    return [r[key] for r in _finished(cfg, task, method, gen)]


def seed_diffs(cfg: SweepConfig, task: str, a: tuple[str, str], b: tuple[str, str]):
    """Per-seed test-accuracy differences A - B of two (column, generator) cells, or None
    unless every seed of both finished (a seed's methods share k-shot sets and test subset)."""
    va, vb = (_values(cfg, task, c, g) for c, g in (a, b))
    n = len(cfg.seeds)
    return [x - y for x, y in zip(va, vb, strict=True)] if len(va) == len(vb) == n else None


def _paired_line(label: str, diffs: dict[str, list[float] | None]) -> list[str]:
    """One sentence: A - B, mean and t interval over the tasks whose seeds all finished
    (seeds for one task); says how many tasks that is when some are missing."""
    done = {t: d for t, d in diffs.items() if d is not None}
    if not done:
        return []
    if len(done) < len(diffs):
        label += f" ({len(done)} of {len(diffs)} tasks finished: {', '.join(done)})"
    return [f"{label}, paired by seed (points): {paired_summary(done).describe()}.", ""]


def table(cfg: SweepConfig, command: str) -> str:
    n = len(cfg.seeds)
    plan = planned(cfg)
    done = sum((rc.run_dir / "result.json").exists() for rc in plan)
    devices = sorted({r.get("device", "cpu") for rc in plan if (r := _read(rc)) is not None})
    lines = [
        f"# CBP-Tuning per domain (SmolLM2-135M-Instruct, runs on: {', '.join(devices)})",
        "",
        f"Command: `{command}`",
        "",
        f"Test accuracy (%), mean ± std over seeds {list(cfg.seeds)}; "
        + (
            f"{cfg.shots} shots per class for train and dev each"
            if cfg.kshot == "balanced"
            else f"train and dev sets of {cfg.shots} x (classes) examples each, in the train "
            "pool's class proportions (kshot=natural; the same test subsets as kshot=balanced)"
        )
        + f"; {cfg.test_size} test examples{_small_pools(cfg)}, never trained on, not even "
        "by stage 1. Black-box methods "
        f"(BBT, BBTv2, CBP) at the same budget of {cfg.budget} API calls (train + dev; one call "
        "is one example scored, see the last section), "
        f"population {cfg.population}. Each seed draws its own k-shot sets and test subset "
        "(all methods of a seed share them). White-box PT: gradients through the model, "
        f"{cfg.pt_epochs} epochs, no budget (upper bound). CBP z0 only: the provider's "
        "stage-1 vector, no stage 2 (costs no API calls). The engine scores the start point "
        "(z0) on dev first, so CBP returns z0 when no generation beats it on dev."
        + (
            f" Dev margin {cfg.dev_margin}: a new ES mean replaces the kept one only if it gets "
            f"more than {cfg.dev_margin} more dev examples right."
            if cfg.dev_margin
            else ""
        ),
        "",
        f"Runs finished: {done} of {len(plan)} planned. A `not run` cell is a run the sweep has "
        "not reached (it runs the zero-shot, BBT and CBP columns on every task first); "
        "rerunning the command resumes the sweep and rewrites this file."
        + (
            ""
            if set(cfg.methods) == set(METHODS)
            else f" This sweep runs only {', '.join(cfg.methods)}: the other columns stay "
            "`not run`."
        ),
        "",
        "Stage 1 (provider): one generator per domain (r = 500, m = 256, t = 10), AdamW, "
        f"batch 8, inputs cut to their last {cfg.stage1_max_len} tokens, max(150, "
        f"{cfg.steps_per_task} x tasks) steps on the domain tasks' train pools (logs in "
        f"{cfg.out}/generators/*/log.jsonl)."
        + (
            " Per-task vectors: stage 1 trains one vector per task and releases their mean as z0."
            if cfg.task_vectors
            else ""
        )
        + (
            " Options shuffled in stage 1: each multiple-choice training example's options are"
            " put in a random order (the label follows the right one)."
            if cfg.permute_options
            else ""
        )
        + (
            " Only the held-out tasks are planned here: their held-out CBP runs"
            + (" and BBT." if "bbt" in cfg.methods else ".")
            if cfg.held_out_only
            else ""
        ),
        "",
    ]
    for domain in () if cfg.held_out_only else cfg.domains:
        tasks = domain_tasks(domain)
        lines += [f"## {domain}", "", f"Generator trained on: {', '.join(tasks)}.", ""]
        lines += ["| task | " + " | ".join(LABELS[c] for c in COLUMNS) + " |"]
        lines += ["|---" * (len(COLUMNS) + 1) + "|"]
        means = {c: [] for c in COLUMNS}
        for task in tasks:
            cells = []
            for c in COLUMNS:
                v = _values(cfg, task, c, domain)
                cells.append(_cell(v, n))
                means[c].append(np.mean(v) if len(v) == n else np.nan)
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        avg = [
            f"{100 * np.mean(means[c]):.1f}" if not np.isnan(means[c]).any() else "incomplete"
            for c in COLUMNS
        ]
        lines += ["| **average** | " + " | ".join(avg) + " |", ""]
        cbp_vs_bbt = {t: seed_diffs(cfg, t, ("cbp", domain), ("bbt", "")) for t in tasks}
        lines += _paired_line("CBP - BBT", cbp_vs_bbt)
    if cfg.leave_one_out:
        lines += [
            "## Leave-one-task-out (held-out tasks)",
            "",
            "The generator is trained on the domain without the task, then customized on it. "
            "Sampling noise of one run's test accuracy: its binomial standard error, at most "
            "50/sqrt(n) points for n test examples (3.5 at n = 200"
            + (
                "; 7.1 for copa's 49, where std 0.0 means every seed kept the same prompt on "
                "the same 49 examples"
                if "copa" in cfg.leave_one_out
                else ""
            )
            + "). The "
            "average row is over the tasks whose held-out runs all finished. The paired lines "
            "below it: per-seed differences on shared k-shot sets and test subsets, a t "
            "interval over tasks (each task's mean difference over seeds is one unit).",
            "",
            "| task | n test | BBT | CBP z0 in-domain | CBP in-domain | CBP z0 held-out "
            "| CBP held-out |",
            "|---|---|---|---|---|---|---|",
        ]
        columns = (("bbt", ""), ("cbp_z0", "in"), ("cbp", "in"), ("cbp_z0", "held"),
                   ("cbp", "held"))  # fmt: skip
        per_task = {}
        for task in cfg.leave_one_out:
            d = next(d for d in cfg.domains if task in domain_tasks(d))
            gens = {"": "", "in": d, "held": f"{d}-minus-{task}"}
            per_task[task] = vals = [_values(cfg, task, c, gens[g]) for c, g in columns]
            n_test = run_config(cfg, task, "bbt", cfg.seeds[0]).test_size
            cells = [str(n_test)] + [_cell(v, n) for v in vals]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        # Average the columns that any task finished, over the tasks that finished them all
        # (a held_out_only sweep has no in-domain columns).
        in_play = [any(len(v[i]) == n for v in per_task.values()) for i in range(len(columns))]
        rows = [
            [np.mean(x) if play else np.nan for x, play in zip(v, in_play, strict=True)]
            for v in per_task.values()
            if all(len(x) == n for x, play in zip(v, in_play, strict=True) if play)
        ]
        if rows and any(in_play):
            avg = [f"{100 * m:.1f}" if play else "not run"
                   for m, play in zip(np.mean(rows, axis=0), in_play, strict=True)]  # fmt: skip
            lines.append(f"| **average ({len(rows)} tasks)** | | " + " | ".join(avg) + " |")
        lines.append("")
        for label, a, b in (
            ("CBP held-out - BBT", ("cbp", "held"), ("bbt", "")),
            ("CBP held-out - CBP in-domain", ("cbp", "held"), ("cbp", "in")),
        ):
            diffs = {}
            for task in cfg.leave_one_out:
                d = next(d for d in cfg.domains if task in domain_tasks(d))
                gens = {"": "", "in": d, "held": f"{d}-minus-{task}"}
                diffs[task] = seed_diffs(cfg, task, (a[0], gens[a[1]]), (b[0], gens[b[1]]))
            lines += _paired_line(label, diffs)
    lines += [] if cfg.held_out_only else _generations_table(cfg)
    lines += ["What the numbers say, by hand: `cbp_reading.md` (not rewritten by this script).", ""]
    return "\n".join(lines)


def _generations_table(cfg: SweepConfig) -> list[str]:
    """How far the budget went: CMA-ES generations per run (mean over finished seeds)."""
    lines = [
        "## What the budget paid for",
        "",
        "One API call is one example scored. A CMA-ES generation costs population x train "
        "examples calls and each dev evaluation dev-size calls, so the budget pays for few "
        "generations; the numbers below are generations per run (mean over finished seeds). "
        "BBTv2 runs one phase per layer in turn (layers "
        f"{cfg.bbtv2_layers}) as far as the budget pays for a generation in each; the layers "
        "it reached are in brackets.",
        "",
        "| task | BBT | BBTv2 (layers tuned) | CBP |",
        "|---|---|---|---|",
    ]
    for domain in cfg.domains:
        for task in domain_tasks(domain):
            cells = []
            for method in ("bbt", "bbtv2", "cbp"):
                runs = _finished(cfg, task, method, domain)
                if not runs:
                    cells.append("not run")
                    continue
                gens = np.mean([r.get("generations", np.nan) for r in runs])
                cell = f"{gens:.1f}"
                if method == "bbtv2":
                    tuned = sorted({tuple(r.get("layers_tuned", [])) for r in runs})
                    cell += " (" + "; ".join(",".join(map(str, t)) or "none" for t in tuned) + ")"
                cells.append(cell)
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot(cfg: SweepConfig, path: pathlib.Path) -> None:
    """Dev accuracy of the ES mean vs API calls, CBP vs BBT, one panel per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cfg.domains), figsize=(5 * len(cfg.domains), 3.6))
    for ax, domain in zip(np.atleast_1d(axes), cfg.domains, strict=True):
        for i, task in enumerate(domain_tasks(domain)):
            color = f"C{i % 10}"  # one colour per task, one line style per method
            for method, style in (("bbt", "--"), ("cbp", "-")):
                for seed in cfg.seeds:
                    res = _read(
                        run_config(cfg, task, method, seed, domain if method == "cbp" else "")
                    )
                    if res is None:
                        continue
                    pts = [(h["calls"], h["dev_acc"]) for h in res["history"] if "dev_acc" in h]
                    if pts:
                        x, y = zip(*pts, strict=True)
                        label = f"{task} {LABELS[method]}" if seed == cfg.seeds[0] else None
                        ax.plot(x, y, style, color=color, alpha=0.6, label=label)
        ax.set(title=domain, xlabel="API calls", ylabel="dev accuracy (ES mean)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("stage", choices=["all", "train", "run", "table"])
    parser.add_argument("--tasks", default="", help="comma-separated subset of tasks to run")
    parser.add_argument("--budget", type=int, default=SweepConfig.budget)
    parser.add_argument("--seeds", default=",".join(map(str, SweepConfig.seeds)))
    parser.add_argument("--set", nargs="*", default=[], help="SweepConfig overrides, k=v")
    parser.add_argument("--results-name", default="cbp", help="<name>.md and <name>_vs_bbt.png")
    args = parser.parse_args(argv)
    cfg = SweepConfig(budget=args.budget, seeds=tuple(int(s) for s in args.seeds.split(",")))
    cfg = apply_overrides(cfg, args.set)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    if args.stage == "train":
        train(cfg)
    if args.stage in ("all", "run"):
        run_all(cfg, tasks)
    if args.stage in ("all", "table"):
        command = "python experiments/cbp_domains.py all" + (
            f" --budget {args.budget}" if args.budget != SweepConfig.budget else ""
        )
        if args.set:
            command += " --set " + shlex.join(args.set)
        if args.results_name != "cbp":
            command += f" --results-name {args.results_name}"
        RESULTS.mkdir(parents=True, exist_ok=True)
        md = RESULTS / f"{args.results_name}.md"
        md.write_text(table(cfg, command) + "\n")
        if not cfg.held_out_only:  # the plot is of in-domain CBP against BBT
            plot(cfg, RESULTS / f"{args.results_name}_vs_bbt.png")
        print(md.read_text())


if __name__ == "__main__":
    main()
