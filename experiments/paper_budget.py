"""The paper-budget tables (8000 calls, P = 20, 3 seeds) on sst2 and financial_phrasebank.

    python experiments/paper_budget.py run [--only sst2/bbt] [--max-runs N]
    python experiments/paper_budget.py table
    python experiments/paper_budget.py stash   # unfinished runs' newest checkpoints -> git
    python experiments/paper_budget.py stash --every 20   # ... again every 20 minutes
    python experiments/paper_budget.py run --model gemma3-270m --columns zero_shot,bbt
    python experiments/paper_budget.py run --ray [--ray-address HOST:6379] [--gpus-per-cell 1]

`run` trains the sentiment generators it needs (stage 1), then runs every planned cell that
has no committed record (experiments/results/paper_budget_runs.jsonl), one process, the
model loaded once in the auto dtype, JAX's persistent compilation cache on; each finished
run is appended to the records at once. `table` writes experiments/results/paper_budget.md
and the curves from the records only. `stash` copies each unfinished run's newest ES
checkpoint to experiments/results/paper_budget_in_flight/ (commit it: checkpoints/ does not
survive a machine); `run` restores a stash before it starts that run, which then resumes.
`stash` and `run` drop the stashes of runs that have records and regenerate the stash index.
`stash --every M` repeats the stash every M minutes until killed: started beside a long run, it
bounds what a machine lost without warning costs to M minutes (what a killed session left
uncommitted under experiments/ can be recovered; a run's own checkpoints/ cannot).
On a 2-core CPU, two `run --only <cell>` processes pinned one per core (`taskset -c 0`,
`taskset -c 1`) do 1.3-1.4x the work per hour of one (results/precision.md).
`--results DIR` puts records, report and stashes in DIR instead of experiments/results/: a
run in a second git worktree (code kept still while the main checkout changes) then appends
its records straight to the main checkout's, so nothing finished waits to be copied over.
`--model` replicates the protocol on another registered model (report
paper_budget_<model>.md, records paper_budget_<model>_runs.jsonl); its CBP columns use
generators trained on that model (stage 1 on first need, financial included, under
checkpoints/paper_budget/generators/<model>/).
`run --ray` runs the missing cells as Ray tasks (`pip install -e '.[cluster]'`; a local Ray
on this machine, or the cluster at `--ray-address`), one worker per `--cpus-per-cell` cores
or `--gpus-per-cell` GPUs, each loading the model once; this process appends the records
(cbp_jax/experiment/ray_runner.py; README "Running a study on a cluster").
Plan and report: cbp_jax.experiment.paper_budget*.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

from cbp_jax.experiment.compile_cache import CompileStats, enable_compile_cache
from cbp_jax.experiment.in_flight import prune, restore, stash, write_index
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.paper_budget import PaperBudgetConfig, ensure_generators, generators_for
from cbp_jax.experiment.records import RecordStore
from cbp_jax.model.registry import DEFAULT_MODEL
from cbp_jax.run import RunConfig

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DEFAULTS = {f: v.default for f, v in RunConfig.__dataclass_fields__.items()}
RESUME = "python experiments/paper_budget.py run [--model M --columns ...]"


def tidy_stashes(cells, store, in_flight: pathlib.Path) -> None:
    """Drop the stashes of runs that now have records; regenerate the stash index."""
    finished = [c.config.run_dir for c in cells if store.get(c) is not None]
    for name in prune(in_flight, finished):
        print(f"removed the stash of finished run {name}")
    write_index(in_flight, RESUME)


def make_runner(model_name: str, dtype: str, in_flight: pathlib.Path):
    """The model loaded once, and a runner of one cell's config with it (in this process, or
    once per Ray worker): a stashed checkpoint restored first, compilations counted."""
    from cbp_jax.model import load_model
    from cbp_jax.run import run

    model = load_model(model_name, dtype=dtype)

    def runner(rc):
        if restore(in_flight, rc.run_dir):
            print(f"restored a stashed checkpoint into {rc.run_dir}", flush=True)
        stats = CompileStats().start()
        result = run(rc, progress=False, model=model)
        result["compile"] = stats.stop()
        return result

    return runner


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("run", "table", "stash"))
    p.add_argument("--only", default="", help="run only cells whose name starts with this")
    p.add_argument("--max-runs", type=int, default=0, help="stop after this many runs (0: all)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the served model (registry name)")
    p.add_argument("--columns", default="", help="only these columns, e.g. zero_shot,bbt")
    p.add_argument("--every", type=float, default=0.0, help="stash: repeat every M minutes")
    p.add_argument(
        "--results",
        default=str(RESULTS),
        help="records, report and stashes live here (a worktree's runs can write into main's)",
    )
    p.add_argument("--ray", action="store_true", help="run: each cell a Ray task (cluster extra)")
    p.add_argument("--ray-address", default="", help="join this Ray cluster (default: start one)")
    p.add_argument("--ray-cpus", type=int, default=0, help="cores of the local Ray (0: all)")
    p.add_argument("--cpus-per-cell", type=float, default=1.0, help="cores each Ray worker holds")
    p.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs each Ray worker holds")
    p.add_argument("--tpus-per-cell", type=float, default=0.0, help="TPU chips each one holds")
    args = p.parse_args(argv)
    results = pathlib.Path(args.results)
    in_flight = results / "paper_budget_in_flight"
    only = tuple(c for c in args.columns.split(",") if c)
    cfg = PaperBudgetConfig(model=args.model, only_columns=only)
    cells = cfg.cells()
    store = RecordStore(results / f"{cfg.name}_runs.jsonl", defaults=DEFAULTS)
    if args.command == "stash":
        while True:
            store = RecordStore(store.path, defaults=DEFAULTS)  # records committed meanwhile
            for c in cells:
                label = f"{cfg.model}: {c.name}"
                if store.get(c) is None and (out := stash(c.config.run_dir, in_flight, label)):
                    print(f"stashed {c.name} -> {out}", flush=True)
            tidy_stashes(cells, store, in_flight)
            if args.every <= 0:
                return
            time.sleep(60 * args.every)
    if args.command == "run":
        enable_compile_cache()
        selected = [c for c in cells if c.name.startswith(args.only)]
        todo = [c for c in selected if store.get(c) is None and cfg.runnable(c)]
        if args.max_runs:
            todo = todo[: args.max_runs]
        ensure_generators(cfg, generators_for(cfg, todo))
        names = {c.name for c in todo}
        model_args = (cells[0].config.model, cells[0].config.dtype, in_flight)
        if args.ray:  # each cell a Ray task; this process only appends the records
            from cbp_jax.experiment.ray_runner import RayConfig, run_cells_ray

            ray_cfg = RayConfig(
                address=args.ray_address or None, num_cpus=args.ray_cpus or None,
                cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell,
                resources=(("TPU", args.tpus_per_cell),) if args.tpus_per_cell else (),
            )  # fmt: skip
            make = functools.partial(make_runner, *model_args)
            _, progress = run_cells_ray(cells, store, make, ray_cfg, only=lambda c: c.name in names)
            for name, why in progress.failed:
                print(f"FAILED {name}: {why}")
        else:
            runner = make_runner(*model_args)
            _, progress = run_cells(cells, store, runner, only=lambda c: c.name in names)
        print(f"ran {progress.ran}, reused {progress.reused}, in {progress.seconds:.0f} s")
        tidy_stashes(cells, store, in_flight)
    from cbp_jax.experiment.paper_budget_report import write_report

    print(f"wrote {write_report(cfg, cells, store, results)}")


if __name__ == "__main__":
    main()
