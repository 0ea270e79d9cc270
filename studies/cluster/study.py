"""Study `cluster`: a small real study run twice, serially and through a local Ray.

    cbp-jax study cluster run [--budget 60] [--seeds 0,1,2] [--test-size 24] [--workers 2]

The study: BBT (the published protocol's column of the paper-budget table) on
financial_phrasebank, 4 shots per class, population 20, `--budget` calls, one cell per seed,
on the default model. It runs once in this process (the serial path, `run_cells`) and once
through a local Ray with `--workers` workers of 1 core each (`run_cells_ray`), each path with
its own fresh persistent compilation cache and run directories, records in
studies/cluster/runs_{serial,ray}.jsonl (removed first: both paths run every
cell). It checks that both paths recorded the same cells with the same results, wall and
compile figures aside, and writes table.md: wall time of each path, compilations and
compile vs run seconds of the serial process and of each Ray worker.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import shutil
import time

from cbp_jax.experiment.compile_cache import CompileStats, enable_compile_cache
from cbp_jax.experiment.identity import config_hash
from cbp_jax.experiment.layer import make_runner, run_cells
from cbp_jax.experiment.ray_runner import RayConfig, run_cells_ray
from cbp_jax.experiment.records import RecordStore
from cbp_jax.model.precision import machine_info
from studies.paper_budget.plan import PaperBudgetConfig

QUESTION = "Does a study run through Ray record the same results as the serial path?"
ANSWER = "Yes: BBT on financial_phrasebank, 3 seeds, identical records (table.md)"
COMMANDS = ("run",)
RESULTS = pathlib.Path(__file__).resolve().parent
WORK = pathlib.Path("checkpoints/cluster_study")
TIMING = ("seconds", "cpu_seconds", "compile")  # what may differ between two runs of a cell


def study(args, path: str) -> list:
    cfg = PaperBudgetConfig(tasks=("financial_phrasebank",), shots=(("financial_phrasebank", 4),),
                            seeds=args.seeds, budget=args.budget, test_size=args.test_size,
                            only_columns=("published/bbt",), out=str(WORK / path))  # fmt: skip
    return cfg.cells()


def _placed_nowhere(result: dict) -> dict:
    """A result without its timing figures, its commit (HEAD when the cell finished: it moves
    whenever anything is committed meanwhile) and where it was written (`out`)."""
    out = {k: v for k, v in result.items() if k not in (*TIMING, "commit")}
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items() if k != "out"}
    return out


def same_records(a: RecordStore, b: RecordStore) -> list[str]:
    """The fields (name: field) in which two stores' records of the same cells differ, the
    run directory (`out`, which each path sets to its own) and what `_placed_nowhere` drops
    aside. A record's id hashes its whole config, `out` included: it is checked with b's
    `out` put into a's config."""
    diff = [] if set(a.records) == set(b.records) else ["the recorded cells"]
    for name in sorted(set(a.records) & set(b.records)):
        ra, rb = a.records[name], b.records[name]
        if config_hash({**ra["config"], "out": rb["config"]["out"]}) != rb["id"]:
            diff.append(f"{name}: id")
        if {**ra["config"], "out": None} != {**rb["config"], "out": None}:
            diff.append(f"{name}: config")
        diff += [f"{name}: dtype"] if ra["dtype"] != rb["dtype"] else []
        res_a, res_b = (_placed_nowhere(r["result"]) for r in (ra, rb))
        diff += [f"{name}: result.{k}" for k in sorted(set(res_a) | set(res_b))
                 if res_a.get(k) != res_b.get(k)]  # fmt: skip
    return diff


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("--budget", type=int, default=60)
    p.add_argument("--seeds", type=lambda s: tuple(int(x) for x in s.split(",")), default=(0, 1, 2))
    p.add_argument("--test-size", type=int, default=24)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    stores = {}
    for path in ("serial", "ray"):
        (RESULTS / f"runs_{path}.jsonl").unlink(missing_ok=True)
        stores[path] = RecordStore(RESULTS / f"runs_{path}.jsonl")
    cells = study(args, "serial")
    model_args = (cells[0].config.model, cells[0].config.dtype, WORK / "no_stashes")

    enable_compile_cache(WORK / "cache_serial")
    start, stats = time.time(), CompileStats().start()
    run_cells(cells, stores["serial"], make_runner(*model_args))
    serial = {"wall": time.time() - start, **stats.stop()}

    import ray  # the cluster extra

    ray.init(num_cpus=args.workers, include_dashboard=False)
    cfg = RayConfig(cpus_per_cell=1, workers=args.workers, compile_cache=str(WORK / "cache_ray"))
    make = functools.partial(make_runner, *model_args)
    start = time.time()  # workers started inside: their start-up and model loads count
    _, progress = run_cells_ray(study(args, "ray"), stores["ray"], make, cfg)
    wall_ray = time.time() - start
    ray.shutdown()
    if progress.failed:
        raise SystemExit(f"cells failed on Ray: {progress.failed}")
    diff = same_records(stores["serial"], stores["ray"])
    write_md(args, cells, stores, serial, wall_ray, progress, diff)
    print("records identical" if not diff else f"records differ: {diff}")


def write_md(args, cells, stores, serial, wall_ray, progress, diff) -> None:
    accs = ", ".join(f"{n.split('/')[-1]} {100 * r['result']['test_acc']:.1f}"
                     for n, r in sorted(stores["serial"].records.items()))  # fmt: skip
    per_cell = {k: ", ".join(str(r["result"]["compile"]["compilations"])
                             for _, r in sorted(st.records.items()))
                for k, st in stores.items()}  # fmt: skip
    run_s = sum(r["result"]["seconds"] for r in stores["serial"].records.values())
    lines = [
        "# A study through Ray against the serial path",
        "",
        f"BBT (published protocol) on financial_phrasebank, 4 shots per class, population 20, "
        f"{args.budget} calls, test size {args.test_size}, seeds {list(args.seeds)}, default "
        f"model, one cell per seed; run by `cbp-jax study cluster run --budget "
        f"{args.budget} --seeds {','.join(map(str, args.seeds))} --test-size "
        f"{args.test_size} --workers {args.workers}` on {machine_info()['cpu']} "
        f"({os.cpu_count()} cores). Each path had its own fresh persistent compilation "
        "cache and run directories. Records: `runs_serial.jsonl`, `runs_ray.jsonl`.",
        "",
        "**The machine's 2 cores were busy with other long experiment runs (load average "
        "about 9-15) while this ran: both wall times are inflated, and by different amounts "
        "as that load changed; they show the figures, not the speed-up.**",
        "",
        "Records: "
        + (
            "identical: the same cells, configs, dtypes and results (best z, history, curve, "
            "predictions, accuracies), all but the run directory each path wrote to "
            "(`out`, hence the config hash), the commit each cell finished at (HEAD moved "
            "while other sessions committed) and the seconds and compile figures"
            if not diff
            else f"DIFFER in {diff}"
        )
        + f". Test accuracies: {accs}.",
        "",
        "| path | wall s | process | cells | compilations | cache hits | compile s | run s |",
        "|---|---|---|---|---|---|---|---|",
        f"| serial | {serial['wall']:.0f} | this one (model load included) | {len(cells)} | "
        f"{serial['compilations']} | {serial['cache_hits']} | {serial['compile_seconds']:.0f}"
        f" | {serial['wall'] - serial['compile_seconds']:.0f} |",
    ]
    for i, w in enumerate(w for _, w in sorted(progress.workers.items())):
        wall = f"{wall_ray:.0f}" if i == 0 else ""
        lines.append(f"| ray, {args.workers} workers of 1 core | {wall} | worker {i + 1} | "
                     f"{len(w['cells'])} | {w['compilations']} | {w['cache_hits']} | "
                     f"{w['compile_seconds']:.0f} | {w['run_seconds']:.0f} |")  # fmt: skip
    lines += [
        "",
        f"Serial cells' own seconds sum to {run_s:.0f} s. A Ray worker's figures cover its "
        "cells from the model load on (Ray's own start-up is in the wall time only). "
        f"Compilations per cell, seeds in order: serial {per_cell['serial']}; Ray "
        f"{per_cell['ray']}. A process's first cell compiles everything (about 95 programs); "
        "a later cell in the same process compiles only the few programs whose shapes "
        "depend on its seed's k-shot set (4, still most of its compile seconds). Every "
        "worker wrote to and read from one compilation cache directory; both workers started "
        "at once, so their cache hits are mostly within one process. A worker holds 1 core in "
        "Ray's accounting; XLA's CPU threads are not pinned, so the workers share both cores.",
        "",
    ]
    (RESULTS / "table.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
