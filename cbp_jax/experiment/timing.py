"""Interleaved wall-clock timing for benchmarks: jobs take turns, so load hits them alike.

Every benchmark in experiments/ compares jobs (ours vs PyTorch, float32 vs bfloat16) by
ratios measured in one run. Timing them one after another lets a burst of load from another
process land on one job only (torch's worker threads collapse under load), so each job is
warmed up once and then the jobs take turns within every repeat.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Jobs = dict[str, Callable[[], object]]


def interleaved_times(
    jobs: dict[str, Callable[[], object]], repeats: int, warmup: bool = True
) -> dict[str, list[float]]:
    """Wall seconds of each job per repeat; each is warmed up once (unless the caller did:
    `warmup=False`), then the jobs take turns.

    A job must block until its work is done (e.g. end in `block_until_ready()`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in jobs.values() if warmup else ():
        fn()  # compile / warm up
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            time.sleep(0.2)  # let the previous job's spinning worker threads go idle
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(jobs: Jobs, repeats: int) -> dict[str, float]:
    """Median wall seconds per job of `interleaved_times`."""
    return {k: statistics.median(t) for k, t in interleaved_times(jobs, repeats).items()}
