"""The cbp study's tables and plot, from run records only (nothing is run).

`use_records` gives the report the sweep's records (study.py reads them from the committed
runs.jsonl, or runs_<variant>.jsonl); a planned run without a record counts as not finished.

`table` writes per-domain rows (mean ± std over seeds of every method), the held-out
section with its paired lines (per-seed differences on shared k-shot sets and test subsets,
t interval over tasks), and how many CMA-ES generations the budget paid for. `plot` draws
dev accuracy of the ES mean against API calls, CBP vs BBT. A cell whose runs did not all
finish says so.
"""

from __future__ import annotations

import pathlib

import numpy as np

from cbp_jax.data.tasks import domain_tasks
from cbp_jax.run import RunConfig
from cbp_jax.stats import paired_summary
from studies.cbp.plan import METHODS, SweepConfig, _small_pools, cell_name, planned, run_config
from studies.common import header, pyplot, row

COLUMNS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp_z0", "cbp")
LABELS = {
    "zero_shot": "zero-shot",
    "bbt": "BBT",
    "bbtv2": "BBTv2",
    "prompt_tuning": "white-box PT",
    "cbp_z0": "CBP z0 only",
    "cbp": "CBP",
}


_RESULTS: dict[str, dict] = {}  # cell name -> its record's result


def use_records(records: list[dict]) -> None:
    """The records the report reads (replacing any given before)."""
    _RESULTS.clear()
    _RESULTS.update({r["name"]: r["result"] for r in records if not r.get("legacy")})


def _read(rc: RunConfig) -> dict | None:
    return _RESULTS.get(cell_name(rc))


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


def _generators_of(cfg: SweepConfig, task: str) -> dict[str, str]:
    """Column key -> generator: none (BBT), in-domain, held-out."""
    return {"": "", "in": cfg.domain_of(task), "held": cfg.held_out_generator(task)}


def table(cfg: SweepConfig, command: str) -> str:
    n = len(cfg.seeds)
    plan = planned(cfg)
    done = sum(_read(rc) is not None for rc in plan)
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
        f"(BBT, BBTv2, CBP) at the same budget of {cfg.budget} API calls in the papers' unit "
        "(one call is one candidate scored on the whole k-shot batch; dev evaluations counted "
        "apart, see the last section), "
        f"population {cfg.population}. Each seed draws its own k-shot sets and test subset "
        "(all methods of a seed share them). White-box PT: gradients through the model, "
        f"{cfg.pt_epochs} epochs, no budget (upper bound). CBP z0 only: the provider's "
        "stage-1 vector, no stage 2 (costs no API calls). The engine scores the start point "
        "(z0) on dev first, so CBP keeps z0 unless a generation beats it on dev accuracy; "
        "ties on dev accuracy go to the lower dev loss."
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
        lines += header("task", *(LABELS[c] for c in COLUMNS))
        means = {c: [] for c in COLUMNS}
        for task in tasks:
            cells = []
            for c in COLUMNS:
                v = _values(cfg, task, c, domain)
                cells.append(_cell(v, n))
                means[c].append(np.mean(v) if len(v) == n else np.nan)
            lines.append(row(task, *cells))
        avg = [
            f"{100 * np.mean(means[c]):.1f}" if not np.isnan(means[c]).any() else "incomplete"
            for c in COLUMNS
        ]
        lines += [row("**average**", *avg), ""]
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
            *header("task", "n test", "BBT", "CBP z0 in-domain", "CBP in-domain",
                    "CBP z0 held-out", "CBP held-out"),
        ]  # fmt: skip
        columns = (("bbt", ""), ("cbp_z0", "in"), ("cbp", "in"), ("cbp_z0", "held"),
                   ("cbp", "held"))  # fmt: skip
        per_task = {}
        for task in cfg.leave_one_out:
            gens = _generators_of(cfg, task)
            per_task[task] = vals = [_values(cfg, task, c, gens[g]) for c, g in columns]
            n_test = run_config(cfg, task, "bbt", cfg.seeds[0]).test_size
            cells = [str(n_test)] + [_cell(v, n) for v in vals]
            lines.append(row(task, *cells))
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
                gens = _generators_of(cfg, task)
                diffs[task] = seed_diffs(cfg, task, (a[0], gens[a[1]]), (b[0], gens[b[1]]))
            lines += _paired_line(label, diffs)
    lines += [] if cfg.held_out_only else _generations_table(cfg)
    lines += ["What the numbers say, by hand: `reading.md` (not rewritten by this script).", ""]
    return "\n".join(lines)


def _generations_table(cfg: SweepConfig) -> list[str]:
    """How far the budget went: CMA-ES generations per run (mean over finished seeds)."""
    lines = [
        "## What the budget paid for",
        "",
        "One API call is one candidate scored on the whole k-shot batch (the papers' unit), so "
        "a CMA-ES generation costs population calls; the numbers below are generations per "
        "run (mean over finished seeds). "
        "BBTv2 runs one phase per layer in turn (layers "
        f"{cfg.bbtv2_layers}) as far as the budget pays for a generation in each; the layers "
        "it reached are in brackets.",
        "",
        *header("task", "BBT", "BBTv2 (layers tuned)", "CBP"),
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
            lines.append(row(task, *cells))
    return lines + [""]


def plot(cfg: SweepConfig, path: pathlib.Path) -> None:
    """Dev accuracy of the ES mean vs API calls, CBP vs BBT, one panel per domain."""
    plt = pyplot()
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
        ax.set(title=domain, xlabel="API calls (papers' unit)", ylabel="dev accuracy (ES mean)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
