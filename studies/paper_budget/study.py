"""Study `paper_budget`: BBT, BBTv2 and CBP at the papers' budget (8000 calls, P = 20, 3 seeds).

    cbp-jax study paper_budget run [--only sst2/published] [--max-runs N]
    cbp-jax study paper_budget table
    cbp-jax study paper_budget status
    cbp-jax study paper_budget stash [--every 20]   # unfinished runs' newest checkpoints -> git
    cbp-jax study paper_budget run --model gemma3-270m --columns zero_shot,bbt
    cbp-jax study paper_budget run --ray [--ray-address HOST:6379] [--gpus-per-cell 1]

`run` trains the sentiment generators it needs (stage 1), then runs every planned cell that
has no committed record (studies/paper_budget/runs.jsonl), one process, the
model loaded once in the auto dtype, JAX's persistent compilation cache on; each finished
run is appended to the records at once. `table` writes table.md and the curves from
the records only; `status` prints seeds done / planned per column and the CPU hours left.
`stash` copies each unfinished run's newest ES checkpoint to stashes/paper_budget/ (commit
it: checkpoints/ does not survive a machine); `run` restores a stash before it starts that
run, which then resumes. `stash` and `run` drop the stashes of runs that have records.
`stash --every M` repeats every M minutes until killed, beside a long run.
On a 2-core CPU, two `run --only <cell>` processes pinned one per core (`taskset -c 0`,
`taskset -c 1`) do 1.3-1.4x the work per hour of one (studies/precision).
`--results DIR` puts records and report in DIR (a run in a second git worktree, code kept
still while the main checkout changes, appends straight to the main checkout's records).
`--model` replicates the protocol on another registered model (table_<model>.md,
runs_<model>.jsonl); its CBP columns use generators trained on that model.
`run --ray` runs the missing cells as Ray tasks (`pip install -e '.[cluster]'`; a local Ray
on this machine, or the cluster at `--ray-address`), one worker per `--cpus-per-cell` cores
or `--gpus-per-cell` GPUs, each loading the model once; this process appends the records
(cbp_jax/experiment/ray_runner.py; docs/cluster.md). Plan: plan.py; report: report.py.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import time

from cbp_jax.experiment.compile_cache import enable_compile_cache
from cbp_jax.experiment.in_flight import prune, stash, write_index
from cbp_jax.experiment.layer import make_runner, run_cells
from cbp_jax.experiment.records import RecordStore
from cbp_jax.model.registry import DEFAULT_MODEL
from cbp_jax.run import RunConfig
from studies.paper_budget.plan import PaperBudgetConfig, ensure_generators, generators_for

QUESTION = "At the papers' budget, does CBP (task held out of stage 1) beat BBT and its own z0?"
ANSWER = (
    "Not yet decided: held-out z0 is below zero-shot on sst2 and below majority on financial; "
    "one held-out 8000-call run (financial, seed 0) lifts it 20.5 -> 57.0 (balanced 58.9), "
    "BBT (words p0) and BBTv2 not yet run"
)
COMMANDS = ("run", "table", "status", "stash")
NAME = "paper_budget"
RESULTS = pathlib.Path(__file__).resolve().parent
DEFAULTS = {f: v.default for f, v in RunConfig.__dataclass_fields__.items()}
RESUME = "cbp-jax study paper_budget run [--model M --columns ...]"


def tidy_stashes(cells, store, in_flight: pathlib.Path) -> None:
    """Drop the stashes of runs that now have records; regenerate the stash index."""
    finished = [c.config.run_dir for c in cells if store.get(c) is not None]
    for name in prune(in_flight, finished):
        print(f"removed the stash of finished run {name}")
    write_index(in_flight, RESUME)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("--only", default="", help="run only cells whose name starts with this")
    p.add_argument("--max-runs", type=int, default=0, help="stop after this many runs (0: all)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the served model (registry name)")
    p.add_argument("--columns", default="", help="only these columns, e.g. zero_shot,bbt")
    p.add_argument("--every", type=float, default=0.0, help="stash: repeat every M minutes")
    p.add_argument(
        "--results",
        default=str(RESULTS),
        help="records and report live here (a worktree's runs can write into main's)",
    )
    p.add_argument("--stashes", default="", help="stashes here (default: <checkout>/stashes/)")
    p.add_argument("--ray", action="store_true", help="run: each cell a Ray task (cluster extra)")
    p.add_argument("--ray-address", default="", help="join this Ray cluster (default: start one)")
    p.add_argument("--ray-cpus", type=int, default=0, help="cores of the local Ray (0: all)")
    p.add_argument("--cpus-per-cell", type=float, default=1.0, help="cores each Ray worker holds")
    p.add_argument("--gpus-per-cell", type=float, default=0.0, help="GPUs each Ray worker holds")
    p.add_argument("--tpus-per-cell", type=float, default=0.0, help="TPU chips each one holds")
    args = p.parse_args(argv)
    results = pathlib.Path(args.results)
    in_flight = pathlib.Path(args.stashes or results.resolve().parents[1] / "stashes" / NAME)
    only = tuple(c for c in args.columns.split(",") if c)
    cfg = PaperBudgetConfig(model=args.model, only_columns=only)
    cells = cfg.cells()
    store = RecordStore(results / cfg.records_file, defaults=DEFAULTS)
    from studies.paper_budget.report import status, write_report

    if args.command == "status":
        print("\n".join(status(cfg, cells, store)))
        return
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
    print(f"wrote {write_report(cfg, cells, store, results)}")


if __name__ == "__main__":
    main()
