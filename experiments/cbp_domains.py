"""CBP-Tuning per domain: stage-1 generators, then every method on every task, as tables.

    python experiments/cbp_domains.py all          # train, run, write the tables
    python experiments/cbp_domains.py train        # stage 1 only (one generator per domain,
                                                   #   plus one per leave-one-task-out task;
                                                   #   `all` and `run` train each generator
                                                   #   when its first run is due)
    python experiments/cbp_domains.py run --tasks copa,arc_easy
    python experiments/cbp_domains.py table        # tables + plot from the records only

For each domain (METHODS.md: commonsense, medical, financial) a generator is trained on the
TRAIN pools of the domain's tasks (`cbp-jax train-generator`); for each leave-one-out task
X another generator is trained on the domain without X. Then, per task and seed, zero-shot,
BBT, BBTv2, white-box prompt tuning and CBP (stage 2 from z0; the same run reports z0's
accuracy without stage 2) run through `cbp_jax.run.run` at the same API budget (the papers'
unit: one candidate on the whole k-shot batch).

The experiment layer keeps the runs: every planned run is a cell (its resolved RunConfig,
paths relative to the repository), finished runs are appended to the committed
experiments/results/<name>_runs.jsonl (default name cbp), a record whose config differs from
the plan is refused naming the field, and `table` writes <name>.md (and
<name>_calls_vs_bbt.png) from the records only. The numbers each table showed before the
papers' unit are legacy records in the same file, rendered below any new runs with their
old unit. The plan is in cbp_sweep.py, the report in cbp_domains_report.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import shlex
import subprocess

from cbp_domains_report import plot, table, use_records
from cbp_sweep import ROOT, SweepConfig, cell_name, planned, portable

from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.legacy import budget_conversion
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import LegacyTable, has_legacy, import_legacy, write_table
from cbp_jax.overrides import apply_overrides
from cbp_jax.run import RunConfig, record_defaults

RESULTS = ROOT / "experiments" / "results"


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
        gen = str(ROOT / rc.generator) if rc.generator else ""
        res = run(dataclasses.replace(rc, out=str(ROOT / rc.out), generator=gen),
                  progress=False, model=model())  # fmt: skip
        print(f"    test {res['test_acc']:.4f}  [{res['seconds']:.0f}s]", flush=True)
        return res

    return one


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("stage", choices=["all", "train", "run", "table"])
    p.add_argument("--tasks", default="", help="comma-separated subset of tasks to run")
    p.add_argument("--budget", type=int, default=SweepConfig.budget)
    p.add_argument("--seeds", default=",".join(map(str, SweepConfig.seeds)))
    p.add_argument("--set", nargs="*", default=[], help="SweepConfig overrides, k=v")
    p.add_argument("--results-name", default="cbp", help="<name>.md and <name>_runs.jsonl")
    return p


def sweep_config(args) -> SweepConfig:
    cfg = SweepConfig(budget=args.budget, seeds=tuple(int(s) for s in args.seeds.split(",")))
    return apply_overrides(cfg, args.set)


def legacy_table(name: str) -> LegacyTable:
    """<name>.md as committed: its budget from the sweep its `Command:` line names (B = shots x
    classes train examples per task; the natural k-shot protocol draws as many)."""
    text = (RESULTS / f"{name}.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("Command: `"))
    argv = shlex.split(line.split("`")[1])[2:]  # after "python experiments/cbp_domains.py"
    cfg = sweep_config(parser().parse_args(argv))
    tasks = sorted({rc.task for rc in planned(cfg)})
    sizes = {t: cfg.shots * get_task(t).num_classes for t in tasks}
    return LegacyTable(name, budget_conversion(cfg.budget, cfg.population, sizes))


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    cfg = sweep_config(args)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    name = args.results_name
    store = RecordStore(RESULTS / f"{name}_runs.jsonl", defaults=record_defaults)
    if not has_legacy(store, name) and (RESULTS / f"{name}.md").exists():
        import_legacy(store, legacy_table(name), RESULTS, ROOT)
    if args.stage == "train":
        train(cfg)
        return
    plan = cells(cfg, tasks)
    if args.stage in ("all", "run"):
        _, progress = run_cells(plan, store, runner(cfg))
        print(f"ran {progress.ran}, reused {progress.reused}", flush=True)
    records, _ = run_cells(cells(cfg), store, None, dry_run=True)
    use_records(records)
    new = ""
    if records:
        command = "python experiments/cbp_domains.py all" + (
            f" --budget {args.budget}" if args.budget != SweepConfig.budget else ""
        )
        command += " --set " + shlex.join(args.set) if args.set else ""
        command += f" --results-name {name}" if name != "cbp" else ""
        new = table(cfg, command) + "\n"
        if not cfg.held_out_only:  # the plot is of in-domain CBP against BBT
            plot(cfg, RESULTS / f"{name}_calls_vs_bbt.png")
    print(f"wrote {write_table(store, name, RESULTS, new)}")


if __name__ == "__main__":
    main()
