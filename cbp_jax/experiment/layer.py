"""plan -> run -> record -> report: the loop every table shares.

A table supplies its cells (name + resolved RunConfig) and a report function of its
records. `run_cells` runs what has no record yet (in plan order, each appended to the
committed JSONL as soon as it finishes, so a killed sweep loses at most the run in flight,
which itself resumes from its checkpoint), refuses records whose config changed, and
returns the records in plan order. Reports are produced from records only. Every new
record's result carries its wall and CPU seconds, its JAX backend and, on a CPU, the CPU's
model (run times compare only on one CPU) unless the runner set them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax

from cbp_jax.experiment.identity import git_commit
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


def check_unique_names(cells) -> None:
    """Raise unless every cell of a table has its own name (records are keyed by it)."""
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError("cell names of a table must be unique")


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
    check_unique_names(cells)
    progress, records = Progress(), []
    for cell in cells:
        rec = store.get(cell)  # raises RecordMismatchError naming changed fields
        if rec is None and not dry_run and (only is None or only(cell)):
            log(f"run {cell.name}")
            result, elapsed = timed_run(runner, cell.config)
            progress.seconds += elapsed
            rec = record(store, cell, result)
            progress.ran += 1
        elif rec is None:
            progress.skipped += 1
        else:
            progress.reused += 1
        if rec is not None:
            records.append(rec)
    return records, progress


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
