"""Study `ablations`: BBT test accuracy vs population size P, intrinsic dimension d and sigma0.

    cbp-jax study ablations run                 # the full ablation (GPU-sized)
    cbp-jax study ablations run --quick         # smoke run: tiny budget, one task
    cbp-jax study ablations run --sweeps sigma --tasks financial_phrasebank --stem NAME
    cbp-jax study ablations table [--stem NAME] # its table (and plot) from the records

Every sweep is one command (`--sweeps population,dims,sigma`); the sweeps, their budgets
and the strategy are plan.py's. Runs go through the experiment layer: one cell per (output
stem, task) whose config is the whole AblationConfig with that task; finished cells are
appended to runs.jsonl beside this file, and the stem's table, raw numbers and plot
(table.md, sweeps.json, sweeps.png for the stem `ablations`; table_<v>.md, sweeps_<v>.json,
sweeps_<v>.png for `ablations_<v>`) are written from the records only. The tables run
before the papers' call unit are legacy records there: their markdown cell by cell, and the
raw per-seed numbers of their JSON files (`legacy/<stem>/json/<task>`); their budgets were
train-only calls, so in the papers' unit they are calls / B exactly (B = 24 train
examples). `--quick` writes runs_quick.jsonl, table_quick.md, marked as a smoke run.
experiments/results/ablations.md links to table.md (an acceptance script reads it there).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import jax
import numpy as np

from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import RecordStore
from cbp_jax.experiment.tables import write_table
from cbp_jax.overrides import apply_overrides
from studies.ablations.plan import QUICK, SWEEPS, AblationConfig, cells, run_task
from studies.common import command, header, layout, parser, pyplot
from studies.common import row as md_row

QUESTION = "How does BBT's accuracy move with population size, intrinsic dimension d and sigma0?"
ANSWER = (
    "Legacy runs only (old call unit, financial_phrasebank): accuracy rises with sigma0 (0.24 to "
    "0.33), falls with P at a fixed budget (0.28 at P=10, 0.13 at 100+); d untold at 2400 calls"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
LEGACY_STEMS = (
    "ablations",
    "ablations_cpu_dims",
    "ablations_gpu_population",
    "ablations_gpu_sigma",
)
# the names the legacy tables' text gives their tables, raw numbers and plots (<stem>.md,
# .json, .png, before the one layout of studies/README.md), rendered as the files' names now
KINDS = (("table", ".md"), ("sweeps", ".json"), ("sweeps", ".png"))
RENAMED = {f"{s}{x}": layout(kind, s, "ablations", x) for s in LEGACY_STEMS for kind, x in KINDS}

_T0 = time.monotonic()  # script start, for the progress lines


def _say(msg: str) -> None:
    """Progress line with the time since the script started (sweeps are single compiled
    calls, so there is no per-generation bar)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


def plot(results: dict, cfg: AblationConfig, path: pathlib.Path) -> None:
    """Test accuracy vs each swept value, one panel per sweep, mean ± std over seeds."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(cfg.sweeps), figsize=(4.5 * len(cfg.sweeps), 3.5))
    for ax, sweep in zip(np.atleast_1d(axes), cfg.sweeps, strict=True):
        for task, res in results.items():
            rows = res[sweep]
            x = [r["value"] for r in rows]
            acc = np.array([r["test_acc"] for r in rows])
            ax.errorbar(x, acc.mean(1), yerr=acc.std(1), marker="o", capsize=3, label=task)
        ax.set_xscale("log")
        ax.set_xlabel({"population": "population P", "dims": "d", "sigma": "sigma0"}[sweep])
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    if cfg.quick:
        fig.suptitle("SMOKE RUN (--quick): not results")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def markdown(results: dict, cfg: AblationConfig, command: str, seconds: float, device) -> str:
    """The new runs' section: one table per sweep, tasks as columns."""
    lines = [f"# BBT ablations ({cfg.model}, Sep-CMA-ES, on {device})", ""]
    if cfg.quick:
        lines += [
            "**SMOKE RUN (`--quick`), NOT RESULTS**: tiny budget, one task, 2 shots, "
            f"{len(cfg.seeds)} seeds, {cfg.test_size} test examples. It only shows that the "
            "script runs end to end; the numbers below mean nothing.",
            "",
        ]
    lines += [
        f"Command: `{command}` ({seconds / 60:.1f} min)",
        "",
        f"{cfg.shots} shots per class (train; split seed {cfg.data_seed}); ES seeds "
        f"{list(cfg.seeds)}; {cfg.budget_per_run} API calls per run in the papers' unit (one "
        "candidate on the whole train batch); "
        f"prompt length {cfg.prompt_len}; defaults P={cfg.population}, d={cfg.num_dims}, "
        f"sigma0={cfg.sigma0}. Test accuracy of the final ES mean, mean ± std over seeds "
        "(generations per run in brackets).",
    ]
    names = {"population": "population P", "dims": "intrinsic dimension d", "sigma": "sigma0"}
    for sweep in cfg.sweeps:
        lines += ["", f"## Accuracy vs {names[sweep]}", ""]
        lines += header(names[sweep], *results)
        for i, row in enumerate(next(iter(results.values()))[sweep]):
            cells = []
            for res in results.values():
                r = res[sweep][i]
                acc = np.array(r["test_acc"])
                cells.append(f"{acc.mean():.3f} ± {acc.std():.3f} ({r['generations']})")
            lines.append(md_row(row["value"], *cells))
    return "\n".join(lines) + "\n"


def new_section(cfg: AblationConfig, dest, stem: str, records: list[dict], command: str) -> str:
    """<stem>'s report of its new runs (writes its sweeps .json and .png); "" when none ran."""
    if not records:
        return ""
    results = {r["config"]["task"]: r["result"] for r in records}
    payload = {"config": dataclasses.asdict(cfg), "command": command, "results": results}
    raw, png = (layout("sweeps", stem, "ablations", ext) for ext in (".json", ".png"))
    (dest / raw).write_text(json.dumps(payload, indent=1) + "\n")
    plot(results, cfg, dest / png)
    seconds = sum(r["result"].get("seconds", 0.0) for r in records)
    devices = ", ".join(sorted({r["result"].get("device", "unknown") for r in records}))
    text = markdown(results, cfg, command, seconds, devices)
    return text + f"\nPlot: `{png}`; raw numbers: `{raw}`.\n"


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0], COMMANDS, RESULTS)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny budget, one task")
    p.add_argument("--sweeps", default=",".join(SWEEPS))
    p.add_argument("--tasks", default=None)
    p.add_argument("--budget-per-run", type=int, default=None)
    p.add_argument("--set", nargs="*", default=[], help="AblationConfig overrides, k=v")
    p.add_argument(
        "--stem",
        default=None,
        help="table stem, the records' key (default: ablations; ablations_<v> writes table_<v>.md)",
    )
    a = p.parse_args(argv)
    kw = dict(QUICK) if a.quick else {}
    kw["sweeps"] = tuple(a.sweeps.split(","))
    if a.tasks:
        kw["tasks"] = tuple(a.tasks.split(","))
    if a.budget_per_run:
        kw["budget_per_run"] = a.budget_per_run
    cfg = apply_overrides(AblationConfig(**kw), a.set)
    stem = a.stem or ("ablations_quick" if cfg.quick else "ablations")
    dest = pathlib.Path(a.results)
    store = RecordStore(dest / f"runs{'_quick' * cfg.quick}.jsonl")
    runner = None
    if a.command == "run":
        from cbp_jax.model import load_model

        model = load_model(cfg.model)

        def runner(config: dict) -> dict:
            start = time.time()
            out = run_task(cfg, model, config["task"], log=_say)
            device = jax.devices()[0].device_kind
            return {**out, "seconds": time.time() - start, "device": device}

    records, _ = run_cells(cells(cfg, stem), store, runner, dry_run=a.command == "table")
    raw = [r for r in store.records.values() if r["name"].startswith(f"legacy/{stem}/json/")]
    if raw and not records:  # the legacy plot, redrawn from its raw per-seed numbers
        results = {r["config"]["task"]: r["result"] for r in raw}
        legacy_cfg = dataclasses.replace(cfg, sweeps=tuple(raw[0]["config"]["sweeps"]))
        plot(results, legacy_cfg, dest / layout("sweeps", stem, "ablations", ".png"))
    opts = {"--sweeps": a.sweeps if a.sweeps != ",".join(SWEEPS) else None, "--tasks": a.tasks,
            "--budget-per-run": a.budget_per_run, "--stem": a.stem}  # fmt: skip
    args = ["--quick"] * a.quick + [str(x) for k, v in opts.items() if v for x in (k, v)]
    args += ["--set", *a.set] if a.set else []
    section = new_section(cfg, dest, stem, records, command("ablations", args))
    name = layout("table", stem, "ablations", ".md")
    print(f"wrote {write_table(store, stem, dest, section, filename=name, renames=RENAMED)}")


if __name__ == "__main__":
    main()
