"""Study `cbp`: CBP-Tuning per domain: stage-1 generators, then every method on every task.

    cbp-jax study cbp run                   # train, run, write the tables
    cbp-jax study cbp run --train-only      # stage 1 only (one generator per domain, plus
                                            #   one per leave-one-task-out task; `run`
                                            #   trains each when its first run is due)
    cbp-jax study cbp run --tasks copa,arc_easy
    cbp-jax study cbp table [--results-name NAME]  # a table + plot from the records only

For each domain (docs/methods.md: commonsense, medical, financial) a generator is trained on the
TRAIN pools of the domain's tasks (`cbp-jax train-generator`); for each leave-one-out task
X another generator is trained on the domain without X. Then, per task and seed, zero-shot,
BBT, BBTv2, white-box prompt tuning and CBP (stage 2 from z0; the same run reports z0's
accuracy without stage 2) run through `cbp_jax.run.run` at the same API budget (the papers'
unit: one candidate on the whole k-shot batch).

The experiment layer keeps the runs: every planned run is a cell (its resolved RunConfig,
paths relative to the repository), finished runs are appended to the committed records
beside this file, a record whose config differs from the plan is refused naming the field,
and `table` writes the table (and the plot of calls against BBT) from the records only:
runs.jsonl, table.md and calls_vs_bbt.png for the default name cbp, runs_<v>.jsonl,
table_<v>.md and calls_vs_bbt_<v>.png for the name cbp_<v> (the name stays the records'
key). The numbers each table showed before the papers' unit are legacy records in the same
file, rendered below any new runs with their old unit. The plan is plan.py, the report
report.py; `python -m studies.cbp.pooled` pools the held-out differences of several sweeps.
experiments/results/cbp.md links to table.md (an acceptance script reads it there).
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import shlex
import subprocess

from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import write_table
from cbp_jax.overrides import apply_overrides
from cbp_jax.run import RunConfig, record_defaults
from studies.cbp.plan import ROOT, SweepConfig, absolute, cell_name, planned, portable
from studies.cbp.report import plot, table, use_records
from studies.common import layout
from studies.common import parser as study_parser

QUESTION = "Does CBP's generator (z0, then stage 2) beat BBT per domain and on held-out tasks?"
ANSWER = (
    "In-domain on financial only beyond the noise (71.7 vs BBT 14.5; old call unit); held out "
    "no: pooled over ten tasks CBP - BBT is +0.2 points [-3.8, +4.2]"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
TABLES = ("cbp", "cbp_budget8000", "cbp_budget8000_held_out", "cbp_budget8000_margin2",
          "cbp_budget8000_natural", "cbp_gpu", "cbp_natural_held_out", "cbp_permuted_held_out",
          "cbp_sentiment", "cbp_task_vectors")  # fmt: skip
# the names the legacy tables' text gives their files (<name>.md, <name>_runs.jsonl,
# <name>_vs_bbt.png, the reading; before the one layout of studies/README.md)
RENAMED = {"cbp_reading.md": "reading.md"} | {
    f"{s}{suffix}": layout(kind, s, "cbp", ext) for s in TABLES
    for suffix, kind, ext in ((".md", "table", ".md"), ("_runs.jsonl", "runs", ".jsonl"),
                              ("_vs_bbt.png", "vs_bbt", ".png"))
}  # fmt: skip


def train(cfg: SweepConfig, names: tuple[str, ...] = ()) -> None:
    """Stage 1 for the named generators (default: all), skipping finished ones."""
    for name, (domain, exclude) in cfg.generators().items():
        if names and name not in names:
            continue
        if (cfg.generator_dir(name) / "generator" / "meta.json").exists():
            continue
        cmd = cfg.stage1_command(domain, exclude, cfg.generator_dir(name))
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)


def cells(cfg: SweepConfig, tasks: tuple[str, ...] = ()) -> list[Cell]:
    return [Cell(cell_name(rc), portable(rc)) for rc in planned(cfg, tasks)]


def runner(cfg: SweepConfig):
    """Run one cell's config (paths made absolute; its generator trained when first due)."""
    from cbp_jax.model import load_model
    from cbp_jax.run import run

    model = functools.cache(lambda: load_model("smollm2-135m"))  # once, when a run is due

    def one(rc: RunConfig) -> dict:
        if rc.tag:
            train(cfg, (rc.tag,))
        res = run(absolute(rc), progress=False, model=model())
        print(f"    test {res['test_acc']:.4f}  [{res['seconds']:.0f}s]", flush=True)
        return res

    return one


def parser() -> argparse.ArgumentParser:
    p = study_parser(__doc__, COMMANDS, RESULTS, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-only", action="store_true", help="run: stage 1 only")
    p.add_argument("--tasks", default="", help="comma-separated subset of tasks to run")
    p.add_argument("--budget", type=int, default=SweepConfig.budget)
    p.add_argument("--seeds", default=",".join(map(str, SweepConfig.seeds)))
    p.add_argument("--set", nargs="*", default=[], help="SweepConfig overrides, k=v")
    p.add_argument("--results-name", "--stem", default="cbp",
                   help="the table's name (cbp_<v>: table_<v>.md, runs_<v>.jsonl)")  # fmt: skip
    return p


def sweep_config(args) -> SweepConfig:
    cfg = SweepConfig(budget=args.budget, seeds=tuple(int(s) for s in args.seeds.split(",")))
    return apply_overrides(cfg, args.set)


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    cfg = sweep_config(args)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    name, dest = args.results_name, pathlib.Path(args.results)
    store = RecordStore(dest / layout("runs", name, "cbp", ".jsonl"), defaults=record_defaults)
    if args.train_only:
        train(cfg)
        return
    if args.command == "run":
        _, progress = run_cells(cells(cfg, tasks), store, runner(cfg))
        print(f"ran {progress.ran}, reused {progress.reused}", flush=True)
    records, _ = run_cells(cells(cfg), store, None, dry_run=True)
    use_records(records)
    new = ""
    if records:
        command = "cbp-jax study cbp run" + (
            f" --budget {args.budget}" if args.budget != SweepConfig.budget else ""
        )
        command += " --set " + shlex.join(args.set) if args.set else ""
        command += f" --results-name {name}" if name != "cbp" else ""
        new = table(cfg, command) + "\n"
        if not cfg.held_out_only:  # the plot is of in-domain CBP against BBT
            plot(cfg, dest / layout("calls_vs_bbt", name, "cbp", ".png"))
    out = layout("table", name, "cbp", ".md")
    print(f"wrote {write_table(store, name, dest, new, filename=out, renames=RENAMED)}")


if __name__ == "__main__":
    main()
