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
of the ES mean against API calls). A cell whose runs did not all finish says so. It also
writes cbp_runs.jsonl, every finished run's result, which later commands restore first:
a fresh clone regenerates the tables and resumes the sweep (cbp_run_records.py).
The plan (`SweepConfig`, `planned`) is in cbp_sweep.py, the tables and plot in
cbp_domains_report.py.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess

import cbp_run_records
from cbp_domains_report import plot, table
from cbp_sweep import ROOT, SweepConfig, planned

from cbp_jax.overrides import apply_overrides
from cbp_jax.run import run

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
    records = RESULTS / f"{args.results_name}_runs.jsonl"  # finished runs, committed
    if args.stage != "train" and records.exists():
        print(f"{cbp_run_records.restore(cfg, records)} finished runs restored from {records}")
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
        cbp_run_records.save(cfg, records)
        if not cfg.held_out_only:  # the plot is of in-domain CBP against BBT
            plot(cfg, RESULTS / f"{args.results_name}_vs_bbt.png")
        print(md.read_text())


if __name__ == "__main__":
    main()
