"""A study's missing cells fanned out over Ray workers; the records written by the driver only.

`run_cells_ray(cells, store, make_runner, RayConfig(...))` is `layer.run_cells` on a Ray
cluster (this machine's cores or GPUs by default, or a cluster joined by address), planned
alike (`layer.plan`). Each worker is an actor holding one cell's resources; it makes its
runner once (`make_runner()`, picklable: the model loads once per worker) and runs cells one
after another, with one shared persistent compilation cache. The DRIVER appends each result
through the same RecordStore as it comes back (lines in finishing order; tables look records
up by name, so they match a serial run's byte for byte). A failed try (an exception, or a
killed worker, which restarts) is retried `retries` times, then reported in
`Progress.failed`; a killed driver resumes from the committed records. Ray is an optional
extra (`pip install -e '.[cluster]'`), imported only when called.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable, Sequence

from cbp_jax.experiment.compile_cache import DEFAULT_CACHE, CompileStats, enable_compile_cache
from cbp_jax.experiment.layer import Progress, plan, record, timed_run
from cbp_jax.experiment.records import Cell, RecordStore


@dataclasses.dataclass(frozen=True)
class RayConfig:
    """Where the study runs and what one cell (one worker) asks for."""

    # None: a local Ray of `num_cpus` cores (None: all); "auto" or "HOST:6379": join a cluster
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0  # e.g. 1: one GPU a worker
    resources: tuple[tuple[str, float], ...] = ()  # e.g. (("TPU", 4),): one TPU host a worker
    workers: int | None = None  # None: as many as the cluster holds, at most one per cell
    retries: int = 1  # further tries of a failed cell
    # the persistent compilation cache every worker uses (shared storage on a multi-host
    # cluster; None: off)
    compile_cache: str | None = str(DEFAULT_CACHE)
    idle_timeout_s: float | None = None  # give up when no cell finished for this long

    def __post_init__(self):
        if self.cpus_per_cell < 0 or self.gpus_per_cell < 0:
            raise ValueError("cpus_per_cell and gpus_per_cell must be >= 0")
        if any(v <= 0 for _, v in self.resources):
            raise ValueError(f"resources must ask for positive amounts, got {self.resources}")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1, got {self.num_cpus}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.address is not None and self.num_cpus is not None:
            raise ValueError("num_cpus sizes a local Ray; a joined cluster has its own")

    def asks(self) -> dict[str, float]:
        """The Ray resources one worker holds."""
        out = {"CPU": self.cpus_per_cell, "GPU": self.gpus_per_cell, **dict(self.resources)}
        return {k: v for k, v in out.items() if v > 0}


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "running a study on Ray needs the cluster extra: pip install -e '.[cluster]'"
        ) from e
    return ray


def start_ray(cfg: RayConfig) -> bool:
    """Start (or join) Ray unless this process already did; True if this call started it."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if cfg.address is None:
        ray.init(num_cpus=cfg.num_cpus, include_dashboard=False)
    else:
        ray.init(address=cfg.address)
    return True


def worker_count(cfg: RayConfig, available: dict[str, float], cells: int) -> int:
    """How many workers: cfg.workers, or as many as `available` (the cluster's total) holds,
    at most `cells`."""
    asks = cfg.asks()
    room = min((math.floor(available.get(k, 0.0) / v + 1e-9) for k, v in asks.items()),
               default=cells)  # fmt: skip
    if room < 1:
        raise RuntimeError(f"the Ray cluster has no room for one cell: it asks {asks}, "
                           f"the cluster has {available}")  # fmt: skip
    return max(1, min(cfg.workers or room, cells))


class CellWorker:
    """One worker process (a Ray actor): its runner made once, then one cell per call."""

    def __init__(self, make_runner: Callable[[], Callable], compile_cache: str | None):
        if compile_cache:
            enable_compile_cache(compile_cache)
        self._make, self._runner = make_runner, None

    def run(self, config) -> tuple[dict, dict]:
        """(the cell's timed result, this worker's figures for it)."""
        stats = CompileStats().start()  # the first call's model load and compiles count too
        start = time.time()
        try:
            if self._runner is None:
                self._runner = self._make()
            result, _ = timed_run(self._runner, config)
        finally:
            compiled = stats.stop()
        seconds = time.time() - start
        worker = {"worker": f"{socket.gethostname()}:{os.getpid()}", "seconds": seconds}
        return result, worker | compiled


def _add(workers: dict, figures: dict, name: str) -> None:
    w = workers.setdefault(figures["worker"], {"cells": [], "compilations": 0,
                                               "compile_seconds": 0.0, "cache_hits": 0,
                                               "seconds": 0.0})  # fmt: skip
    w["cells"].append(name)
    for k in ("compilations", "compile_seconds", "cache_hits", "seconds"):
        w[k] += figures[k]
    w["run_seconds"] = w["seconds"] - w["compile_seconds"]


def run_cells_ray(
    cells: Sequence[Cell],
    store: RecordStore,
    make_runner: Callable[[], Callable[[object], dict]],
    cfg: RayConfig = RayConfig(),
    *,
    only: Callable[[Cell], bool] | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], Progress]:
    """Records of `cells` in plan order, running the missing ones that `only` selects on Ray
    workers. Starts a local Ray (or joins cfg.address) unless one is running, and stops what
    it started."""
    todo, progress = plan(cells, store, only, dry_run)
    if todo:
        ray = _import_ray()
        started = start_ray(cfg)
        try:
            _fan_out(ray, todo, store, make_runner, cfg, progress, log)
        finally:
            if started:
                ray.shutdown()
    records = [rec for c in cells if (rec := store.get(c)) is not None]
    return records, progress


def _fan_out(ray, todo, store, make_runner, cfg, progress, log) -> None:
    n = worker_count(cfg, ray.cluster_resources(), len(todo))  # busy ones queue
    asks = cfg.asks()
    actor = ray.remote(CellWorker).options(
        num_cpus=asks.get("CPU", 0), num_gpus=asks.get("GPU", 0),
        resources={k: v for k, v in asks.items() if k not in ("CPU", "GPU")} or None,
    )  # fmt: skip
    cache = str(os.path.abspath(cfg.compile_cache)) if cfg.compile_cache else None
    runner_ref = ray.put(make_runner)
    log(f"ray: {len(todo)} cells on {n} workers, each holding {asks}")
    actors = []

    def spawn():
        actors.append(actor.remote(runner_ref, cache))
        return actors[-1]

    try:
        _dispatch(ray, n, spawn, todo, store, cfg, progress, log)
    finally:
        for a in actors:
            ray.kill(a)
    for worker, figures in sorted(progress.workers.items()):
        log(f"worker {worker}: {len(figures['cells'])} cells, {figures['compilations']} "
            f"compilations ({figures['cache_hits']} cache hits), compile "
            f"{figures['compile_seconds']:.1f} s, run {figures['run_seconds']:.1f} s")  # fmt: skip


def _dispatch(ray, n, spawn, todo, store, cfg, progress, log) -> None:
    """Start n workers (`spawn()`); give each idle one the next waiting cell; record each
    result as it comes back. A worker whose process died is replaced by a fresh one."""
    idle, start = [spawn() for _ in range(n)], time.time()
    queue = list(todo)  # cells waiting, in plan order
    tries = {c.name: 0 for c in todo}
    pending: dict = {}  # object ref -> (cell, worker)
    while queue or pending:
        while queue and idle:
            cell, worker = queue.pop(0), idle.pop(0)
            tries[cell.name] += 1
            log(f"run {cell.name}" + (f" (try {tries[cell.name]})" if tries[cell.name] > 1 else ""))
            pending[worker.run.remote(cell.config)] = (cell, worker)
        done, _ = ray.wait(list(pending), num_returns=1, timeout=cfg.idle_timeout_s)
        if not done:
            raise TimeoutError(f"no cell finished in {cfg.idle_timeout_s} s; still running: "
                               f"{[c.name for c, _ in pending.values()]}")  # fmt: skip
        cell, worker = pending.pop(done[0])
        try:
            result, figures = ray.get(done[0])
        except Exception as e:  # noqa: BLE001 - the task's error, or its worker's death
            if isinstance(e, ray.exceptions.RayActorError):
                ray.kill(worker)
                worker = spawn()
            idle.append(worker)
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
            if tries[cell.name] <= cfg.retries:
                log(f"{cell.name} failed ({why}); trying it again")
                queue.insert(0, cell)
            else:
                log(f"{cell.name} failed {tries[cell.name]} times, last: {why}")
                progress.failed.append((cell.name, why))
            continue
        idle.append(worker)
        record(store, cell, result)  # the driver alone writes the records
        progress.ran += 1
        progress.seconds = time.time() - start  # wall seconds of the fan-out
        _add(progress.workers, figures, cell.name)
