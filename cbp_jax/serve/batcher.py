"""Request scheduling: requests computed fairly, chunk by chunk, on a fixed set of compiled shapes.

Shapes: a request runs in fixed-shape chunks (`tiles.tile_for`; candidate ids padded to
`BatchConfig.cand_slots`), so one adapter payload shape compiles a bounded set of programs
whatever the clients send; they live in an LRU of `BatchConfig.max_compiled` executables
(enough by default that nothing recompiles after warm-up; `compiles` counts them). The soft
prompt length T is not padded (the model has no prompt mask): each T is its own set.

Scheduling: requests wait in a `waiting.FairQueue` (one queue per user, round robin). The
worker computes ONE chunk of a request (`tiles.Work`) and puts the rest back at the head of
its user's queue, so a small request waits for about one chunk of each other active user,
never for a whole big request. Before each chunk the worker checks whether anyone still
waits (`Job.abandoned`: client gone, past its deadline, user revoked); if nobody does, it
stops (`AbandonedError`, nothing charged).

Packing (optional): with `max_requests > 1` the worker waits up to `window_ms` for more
requests (up to `max_requests` / `max_rows` candidates) and computes those of one tile as
one `Work`; the window closes early when no other request is queued or being decoded
(`arriving()`). On this project's 2-core CPU packing was slower than one request at a time
(experiments/results/service_load.md), so that is the default.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.checks import check_positive
from cbp_jax.serve.tiles import (
    Work,
    bucket,
    chunks_of,
    gather,
    padded_tokens,
    tile_for,
    tile_scores,
    tile_shapes,
)
from cbp_jax.serve.waiting import FairQueue


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """window_ms: how long the first request of a pack waits for company; max_requests /
    max_rows: pack size limits (requests, total candidates); 1 request = no packing (the
    measured-faster default on CPU); max_compiled: LRU bound on compiled executables (64:
    every tile of S <= 512 for one payload shape, 50, fits); cand_slots: candidate ids per
    example a compiled chunk reads (64 classes x 8 words, the default limits; a request
    with more compiles a larger bucket)."""

    window_ms: float = 0.0
    max_requests: int = 1
    max_rows: int = 64
    max_compiled: int = 64
    cand_slots: int = 512

    def __post_init__(self):
        if not self.window_ms >= 0:
            raise ValueError(f"BatchConfig.window_ms must be >= 0, got {self.window_ms}")
        check_positive(self, ("max_requests", "max_rows", "max_compiled", "cand_slots"))


@dataclasses.dataclass
class Job:
    """One validated request: payload rows P x ... (population first, float32 or None)."""

    kind: str
    payload: np.ndarray | None
    tokens: np.ndarray
    mask: np.ndarray
    cands: np.ndarray
    user: str = ""
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    deadline: float = float("inf")  # time.monotonic() past which nobody waits for it
    still_wanted: object = None  # optional callable: False once its user is revoked

    def abandoned(self) -> bool:
        """Nobody waits for it any more: cancelled (client gone, timed out), past its
        deadline, or its user revoked. Checked before each chunk of compute."""
        wanted = self.still_wanted is None or self.still_wanted()
        return self.cancel.is_set() or time.monotonic() > self.deadline or not wanted

    @property
    def rows(self) -> int:
        return 1 if self.payload is None else self.payload.shape[0]

    def key(self, cand_slots: int = BatchConfig.cand_slots) -> tuple:
        """(kind, payload tail, tile (Q, B, S), candidate slots): its compiled program."""
        tail = None if self.payload is None else self.payload.shape[1:]
        shape = tile_for(self.rows, *self.tokens.shape)
        return (self.kind, tail, shape, max(cand_slots, bucket(self.cands.size)))


def length_groups(job: Job, floor: int = 8) -> list[tuple[np.ndarray, Job]]:
    """Re-bucket a left-padded request by row length: [(row indices, job on those rows,
    trimmed to their bucket width)]. A request that joins buckets of different lengths
    (the client's one-request-per-batch) thus pays no padding for its longest row. Rows
    not left-padded (mask not non-decreasing) keep one group."""
    b, s = job.mask.shape
    everything = [(np.arange(b), job)]
    if b == 1 or (np.diff(job.mask, axis=1) < 0).any():
        return everything
    widths = np.minimum([bucket(int(n), floor) for n in job.mask.sum(axis=1)], s)
    if len(set(widths.tolist())) == 1:
        return everything
    groups = []
    for w in sorted(set(widths.tolist())):
        idx = np.flatnonzero(widths == w)
        part = dataclasses.replace(
            job, tokens=job.tokens[idx, s - w :], mask=job.mask[idx, s - w :],
            future=concurrent.futures.Future(),
        )  # fmt: skip
        groups.append((idx, part))
    return groups


__all__ = ["AbandonedError", "BatchConfig", "Batcher", "Job", "bucket", "chunks_of",
           "length_groups", "padded_tokens", "tile_for", "tile_shapes"]  # fmt: skip


class AbandonedError(RuntimeError):
    """A request's compute stopped between chunks: nobody waits for its answer."""


class Batcher:
    """Owns the model arrays and the worker thread; `submit(job)` returns its future."""

    def __init__(self, model, adapters: dict, adapter_params, config: BatchConfig):
        self._model, self._adapters, self._adapter_params = model, adapters, adapter_params
        self.config = config
        self._compiled: collections.OrderedDict = collections.OrderedDict()  # LRU
        self._queue = FairQueue()
        self.packs = 0  # works (requests, or packs of them) computed to the end
        self.compiles = 0  # executables compiled (evicted ones compile again on reuse)
        self.chunks = 0  # compiled calls over one chunk
        self._arriving = 0  # requests past the door, not yet submitted (see `arriving`)
        self._arrive_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="score-batcher", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def arriving(self):
        """Mark a request being decoded: a pack waits (within its window) only for these."""
        with self._arrive_lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._arrive_lock:
                self._arriving -= 1

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue a request (re-bucketed by row length); its future gives P x B x C x W."""
        groups = length_groups(job)
        if len(groups) > 1:
            b, (c, w) = job.tokens.shape[0], job.cands.shape
            gather(job.future, groups, (job.rows, b, c, w))
        for _, part in groups:  # queued before `arriving` is left: the worker sees them
            self._queue.put(part)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _executable(self, kind: str, args: tuple):
        """The compiled tile function for these argument shapes (LRU-cached)."""
        key = (kind, *((a.shape, a.dtype.str) for a in args[2:]))
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        fn = functools.partial(tile_scores, cfg=self._model.cfg, adapter=self._adapters[kind])
        exe = jax.jit(fn).lower(*args).compile()
        self.compiles += 1
        self._compiled[key] = exe
        while len(self._compiled) > self.config.max_compiled:
            self._compiled.popitem(last=False)
        return exe

    def _collect(self, first: Job) -> list[Job]:
        jobs, rows = [first], first.rows
        deadline = time.monotonic() + self.config.window_ms / 1000
        while len(jobs) < self.config.max_requests and rows < self.config.max_rows:
            wait = deadline - time.monotonic()
            if self._arriving == 0 and self._queue.empty():
                break  # nobody else is on the way: do not idle out the window
            job = self._queue.get(timeout=max(wait, 0.0))
            if job is None:  # window over, or shutting down: finish what we hold
                break
            if isinstance(job, Work):  # a started request's next chunk: not for this pack
                self._queue.put_front(job)
                break
            jobs.append(job)
            rows += job.rows
        return jobs

    def works(self, jobs: list[Job]) -> list[Work]:
        """The jobs still wanted (futures not cancelled) as Works: one per tile key, packs
        of at most `max_rows` candidates."""
        groups: dict[tuple, list[Job]] = {}
        for job in jobs:
            if job.future.set_running_or_notify_cancel():  # False: its caller gave up
                groups.setdefault(job.key(self.config.cand_slots), []).append(job)
        out = []
        for key, group in groups.items():
            pack, rows = [], 0
            for job in group:
                if pack and rows + job.rows > self.config.max_rows:
                    out.append(Work(key, pack))
                    pack, rows = [], 0
                pack.append(job)
                rows += job.rows
            out.append(Work(key, pack))
        return out

    def run_now(self, jobs: list[Job]) -> None:
        """Compute `jobs` in the caller's thread, each Work to its end (tests)."""
        for work in self.works(jobs):
            while not work.over:
                self.step(work)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, Job):
                works = self.works(self._collect(item))
                if not works:
                    continue
                for other in reversed(works[1:]):
                    self._queue.put_front(other)
                item = works[0]
            self.step(item)
            if not item.over:  # its next chunk waits for one chunk of every other user
                self._queue.put_front(item)

    def step(self, work: Work) -> None:
        """One chunk of `work`; at its end (or on a failure) its jobs' futures are set.
        Before the chunk, stop (AbandonedError) if nobody waits for any of its jobs."""
        try:
            if work.abandoned():
                raise AbandonedError(f"abandoned after {work.done} of {len(work.items)} items")
            fixed = (self._model.params, self._adapter_params)
            args = (*fixed, *(jnp.asarray(x) for x in work.next_chunk()))
            work.put(np.asarray(self._run_chunk(work.kind, args), np.float32))
        except Exception as e:  # one bad request fails its own jobs, never the server
            work.failed = True
            for job in work.jobs:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        if work.over:
            self.packs += 1
            for job, scores in zip(work.jobs, work.results(), strict=True):
                if not job.future.done():
                    job.future.set_result(scores)

    def _run_chunk(self, kind: str, args: tuple):
        """One compiled call over one chunk (the seam tests hold)."""
        self.chunks += 1
        return self._executable(kind, args)(*args)
