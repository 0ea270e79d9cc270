"""plan -> run -> record -> report: the loop every table shares.

A table supplies its cells (name + resolved RunConfig) and a report of its records only.
`run_cells` runs the cells with no record, in plan order, appending each to the committed
JSONL as soon as it finishes (a killed sweep loses at most the run in flight, which resumes
from its checkpoint); a record whose config changed is refused. Each new result carries its
wall and CPU seconds, JAX backend and, on a CPU, the CPU's model. `make_runner` is the
runner of RunConfig cells (serial, or one per Ray worker, which imports installed code only).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from collections.abc import Callable, Sequence

import jax

from cbp_jax.experiment.compile_cache import CompileStats
from cbp_jax.experiment.identity import git_commit
from cbp_jax.experiment.in_flight import restore
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.model.precision import machine_info


@dataclasses.dataclass
class Progress:
    """What a call to `run_cells` did (for the log and the table's footer)."""

    reused: int = 0
    ran: int = 0
    skipped: int = 0
    seconds: float = 0.0
    # the Ray path (ray_runner.py): cells that failed every try (name, error), and per worker
    # process ("host:pid") its cells, compilations, compile and run seconds
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    workers: dict[str, dict] = dataclasses.field(default_factory=dict)


def plan(cells: Sequence[Cell], store: RecordStore, only=None, dry_run=False):
    """(cells to run, Progress counting the reused and skipped) of a table's unique cells."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError("cell names of a table must be unique")
    progress, todo = Progress(), []
    for cell in cells:
        if store.get(cell) is not None:  # raises RecordMismatchError naming changed fields
            progress.reused += 1
        elif dry_run or (only is not None and not only(cell)):
            progress.skipped += 1
        else:
            todo.append(cell)
    return todo, progress


def run_cells(
    cells: Sequence[Cell],
    store: RecordStore,
    runner: Callable[[object], dict],
    *,
    only: Callable[[Cell], bool] | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], Progress]:
    """Records of `cells` in plan order, running the missing ones that `only` selects."""
    todo, progress = plan(cells, store, only, dry_run)
    for cell in todo:
        if store.get(cell) is not None:  # another process recorded it meanwhile
            progress.reused += 1
            continue
        log(f"run {cell.name}")
        result, elapsed = timed_run(runner, cell.config)
        progress.seconds += elapsed
        record(store, cell, result)
        progress.ran += 1
    return [rec for c in cells if (rec := store.get(c)) is not None], progress


def timed_run(runner: Callable[[object], dict], config) -> tuple[dict, float]:
    """`runner(config)` with its wall and CPU seconds (CPU of all threads, which leaves out
    time stopped), its JAX backend and, on a CPU, the CPU's model; a runner's own figures
    win. Also the wall seconds, apart. Runs where it is called (a Ray worker, for one)."""
    start, start_cpu = time.time(), time.process_time()
    result = runner(config)
    elapsed, cpu = time.time() - start, time.process_time() - start_cpu
    timing = {"seconds": elapsed, "cpu_seconds": cpu, "device": jax.default_backend()}
    if timing["device"] == "cpu":
        machine = machine_info()
        timing |= {"cpu_model": machine["cpu"], "bf16_flags": machine["bf16_flags"]}
    return {**timing, **result}, elapsed


def record(store: RecordStore, cell: Cell, result: dict) -> dict:
    """Append `cell`'s finished result to `store` (its commit and dtype from the result when
    the runner named them) and return the record."""
    dtype = result.get("dtype", {}).get("dtype", "unknown")
    return store.append(cell, result, commit=result.get("commit") or git_commit(), dtype=dtype)


def make_runner(model_name: str, dtype: str, stashes: str | pathlib.Path):
    """The served model loaded once, and `runner(rc)` of one cell's RunConfig with it: it
    restores the newest stashed ES checkpoint of `rc.run_dir` (in_flight.py) if there is
    one, runs the cell (`cbp_jax.run.run`, which resumes from it) and adds the process's
    compilations and compile vs run seconds to the result."""
    from cbp_jax.model import load_model
    from cbp_jax.run import run

    model = load_model(model_name, dtype=dtype)

    def runner(rc):
        if restore(stashes, rc.run_dir):
            print(f"restored a stashed checkpoint into {rc.run_dir}", flush=True)
        stats = CompileStats().start()
        result = run(rc, progress=False, model=model)
        result["compile"] = stats.stop()
        return result

    return runner
