"""Request scheduling and packing: requests served fairly, on a bounded set of compiled shapes.

Scheduling: requests wait in a `FairQueue` (one queue per user, served round robin), so a
small request waits behind at most one request of each other waiting user, never behind a
whole backlog of one heavy user.

Shapes: every request is padded up to a shape bucket before it is computed: population
rows to 1, 2, 4, 8, then multiples of 8 up to 64, then of 32; batch, candidate classes and
words per class to powers of two; sequence to a power of two >= 8 (left padding, masked
out: the model counts positions over real tokens only). The compiled executables live in
an LRU cache of at most `BatchConfig.max_compiled` entries, so the server's memory for
compiled code is bounded whatever shapes clients send, and `compiles` counts compilations.

Chunks: a pack's rows are computed in chunks of at most `TOKENS_PER_CHUNK` tokens (one
compiled shape per bucket), and before each chunk the worker checks whether anyone still
waits for the pack (`Job.abandoned`: client gone, past its deadline, user revoked); if
nobody does, it stops (`AbandonedError`, nothing charged) and takes the next request,
so an abandoned request holds the worker for at most one chunk's time.

Packing (optional): with `max_requests > 1` the worker waits up to `window_ms` for more
requests (up to `max_requests` / `max_rows` candidates), groups them by bucket, and runs
each group as one compiled call: row q of the pack is (candidate payload_q, input slot_q).
The window closes early when no other request is queued or being decoded (`arriving()`).
Measured on the 2-core CPU of this project, packing was slower than serving one request
at a time (experiments/results/service_load.md), so the default is one at a time.
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

from cbp_jax.serve.fair import FairQueue
from cbp_jax.serve.shape_buckets import bucket, chunk_rows, gather, padded_tokens, row_bucket
from cbp_jax.service.oracle import TOKENS_PER_CHUNK, score_population


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """window_ms: how long the first request of a pack waits for company; max_requests /
    max_rows: pack size limits (requests, total candidates); 1 request = no packing (the
    measured-faster default on CPU); max_compiled: LRU bound on compiled executables."""

    window_ms: float = 0.0
    max_requests: int = 1
    max_rows: int = 64
    max_compiled: int = 32

    def __post_init__(self):
        if not self.window_ms >= 0:
            raise ValueError(f"BatchConfig.window_ms must be >= 0, got {self.window_ms}")
        for name in ("max_requests", "max_rows", "max_compiled"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchConfig.{name} must be an int >= 1, got {value!r}")


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

    def key(self) -> tuple:
        b, s = self.tokens.shape
        c, w = self.cands.shape
        tail = None if self.payload is None else self.payload.shape[1:]
        return (self.kind, tail, bucket(b), bucket(s, 8), bucket(c), bucket(w))


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


def _packed(model_params, adapter_params, payload_Q, slot_Q, tokens, mask, cands, *, cfg, adapter):
    """Q x B x C x W log-probs: row q scores payload_Q[q] on input slot slot_Q[q]."""
    none = adapter.kind == "none"

    def one(args):
        payload_i, slot = args
        pl = None if none else jnp.expand_dims(payload_i, adapter.payload_axis)
        return score_population(
            model_params, adapter_params, pl, tokens[slot], mask[slot], cands[slot],
            cfg=cfg, adapter=adapter, population_chunk=None,
        )[0]  # fmt: skip

    q, (b, s) = slot_Q.shape[0], tokens.shape[1:]
    chunk = max(1, TOKENS_PER_CHUNK // (b * s))
    if chunk >= q:
        return jax.vmap(one)((payload_Q, slot_Q))
    return jax.lax.map(one, (payload_Q, slot_Q), batch_size=chunk)


__all__ = ["AbandonedError", "BatchConfig", "Batcher", "Job", "bucket", "chunk_rows",
           "length_groups", "padded_tokens", "row_bucket"]  # fmt: skip


class AbandonedError(RuntimeError):
    """A request's compute stopped between chunks: nobody waits for its answer."""


class Batcher:
    """Owns the model arrays and the worker thread; `submit(job)` returns its future."""

    def __init__(self, model, adapters: dict, adapter_params, config: BatchConfig):
        self._model, self._adapters, self._adapter_params = model, adapters, adapter_params
        self.config = config
        self._compiled: collections.OrderedDict = collections.OrderedDict()  # LRU
        self._queue = FairQueue()
        self.packs = 0  # compiled calls made (for the load test's report)
        self.compiles = 0  # executables compiled (evicted ones compile again on reuse)
        self.chunks = 0  # compiled calls over one chunk of rows
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
        """The compiled pack function for these argument shapes (LRU-cached)."""
        key = (kind, *((a.shape, a.dtype.str) for a in args[2:]))
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        fn = functools.partial(_packed, cfg=self._model.cfg, adapter=self._adapters[kind])
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
            jobs.append(job)
            rows += job.rows
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            groups: dict[tuple, list[Job]] = {}
            for job in self._collect(first):
                if job.future.set_running_or_notify_cancel():  # False: its caller gave up
                    groups.setdefault(job.key(), []).append(job)
            for key, jobs in groups.items():
                pack, rows = [], 0
                for job in jobs:
                    if pack and rows + job.rows > self.config.max_rows:
                        self._run(key, pack)
                        pack, rows = [], 0
                    pack.append(job)
                    rows += job.rows
                self._run(key, pack)

    def _run(self, key: tuple, jobs: list[Job]) -> None:
        try:
            out = self._compute(key, jobs)
        except Exception as e:  # one bad pack fails its own requests, never the server
            for job in jobs:
                job.future.set_exception(e)
            return
        start = 0
        for job in jobs:
            b, (c, w) = job.tokens.shape[0], job.cands.shape
            job.future.set_result(out[start : start + job.rows, :b, :c, :w])
            start += job.rows

    def _compute(self, key: tuple, jobs: list[Job]) -> np.ndarray:
        kind, tail, b, s, c, w = key
        rows = sum(j.rows for j in jobs)
        q = row_bucket(rows)
        tokens = np.zeros((q, b, s), np.int32)
        mask = np.zeros((q, b, s), np.int32)
        mask[:, :, -1] = 1  # padding rows: one real token, never read back
        cands = np.zeros((q, c, w), np.int32)
        payload = np.zeros((q, *(tail or (1,))), np.float32)
        slot = np.zeros((q,), np.int32)
        start = 0
        for i, job in enumerate(jobs):
            jb, js = job.tokens.shape
            tokens[i, :jb, s - js :] = job.tokens  # left-pad the sequence, append rows
            mask[i, :jb] = 0
            mask[i, :jb, s - js :] = job.mask
            jc, jw = job.cands.shape
            cands[i, :jc, :jw] = job.cands
            if job.payload is not None:
                payload[start : start + job.rows] = job.payload
            slot[start : start + job.rows] = i
            start += job.rows
        return self._chunked(kind, jobs, payload, slot, (tokens, mask, cands))

    def _chunked(self, kind: str, jobs: list[Job], payload, slot, inputs) -> np.ndarray:
        """Run the pack's rows in chunks of `chunk_rows` (one compiled shape); before each
        chunk, stop (AbandonedError) if every job of the pack is abandoned."""
        q, (b, s) = payload.shape[0], inputs[0].shape[1:]
        step = chunk_rows(b, s)
        if q > step:  # pad the rows to whole chunks (padding rows score input slot 0)
            extra = -q % step
            payload = np.concatenate([payload, np.zeros((extra, *payload.shape[1:]), np.float32)])
            slot = np.concatenate([slot, np.zeros((extra,), np.int32)])
        else:
            step = q
        fixed = (self._model.params, self._adapter_params)
        inputs = tuple(jnp.asarray(x) for x in inputs)
        out = []
        for start in range(0, payload.shape[0], step):
            if all(job.abandoned() for job in jobs):
                raise AbandonedError(f"abandoned after {start} of {q} rows")
            args = (*fixed, jnp.asarray(payload[start : start + step]),
                    jnp.asarray(slot[start : start + step]), *inputs)  # fmt: skip
            out.append(np.asarray(self._run_chunk(kind, args), np.float32))
        self.packs += 1
        return np.concatenate(out)[:q]

    def _run_chunk(self, kind: str, args: tuple):
        """One compiled call over one chunk of rows (the seam tests hold)."""
        self.chunks += 1
        return self._executable(kind, args)(*args)
