"""Request packing: concurrent score requests run as one compiled call per shape bucket.

A worker thread takes the first queued request, waits up to `window_ms` for more (up to
`max_requests` requests / `max_rows` candidates), groups them by (kind, payload shape past
the population axis, bucketed batch, bucketed sequence, C, W), and concatenates each group
along the population axis: row q of the pack is (candidate payload_q, input slot_q), and
the packed function maps `score_population` over rows, each row reading its own request's
tokens, mask and candidates by index. Batch and sequence are padded up to powers of two
(padding is masked out; the model counts positions over real tokens only) and the row
count to a power of two up to 8, then to a multiple of 8, so a server sees a few compiled
shapes, not one per request.
The window closes early when no other request is queued or being decoded (the server
marks requests with `arriving()`), so a lone request does not wait for company.
`window_ms=0, max_requests=1` is the one-request-at-a-time baseline.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import queue
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.service.oracle import TOKENS_PER_CHUNK, score_population


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """window_ms: how long the first request of a pack waits for company; max_requests /
    max_rows: pack size limits (requests, total candidates)."""

    window_ms: float = 10.0
    max_requests: int = 32
    max_rows: int = 64

    def __post_init__(self):
        if not self.window_ms >= 0:
            raise ValueError(f"BatchConfig.window_ms must be >= 0, got {self.window_ms}")
        if self.max_requests < 1 or self.max_rows < 1:
            raise ValueError("BatchConfig.max_requests and max_rows must be >= 1")


def bucket(n: int, floor: int = 1) -> int:
    """Smallest power of two >= max(n, floor)."""
    return 1 << (max(n, floor) - 1).bit_length()


def row_bucket(n: int) -> int:
    """Packed rows: a power of two up to 8, then a multiple of 8 (<= 12.5% padding rows;
    compute is linear in rows on CPU, so padding is pure waste there)."""
    return bucket(n) if n <= 8 else -(-n // 8) * 8


@dataclasses.dataclass
class Job:
    """One validated request: payload rows P x ... (population first, float32 or None)."""

    kind: str
    payload: np.ndarray | None
    tokens: np.ndarray
    mask: np.ndarray
    cands: np.ndarray
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)

    @property
    def rows(self) -> int:
        return 1 if self.payload is None else self.payload.shape[0]

    def key(self) -> tuple:
        b, s = self.tokens.shape
        tail = None if self.payload is None else self.payload.shape[1:]
        return (self.kind, tail, bucket(b), bucket(s, 8), self.cands.shape)


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


class Batcher:
    """Owns the model arrays and the worker thread; `submit(job)` returns its future."""

    def __init__(self, model, adapters: dict, adapter_params, config: BatchConfig):
        self._model, self._adapters, self._adapter_params = model, adapters, adapter_params
        self.config = config
        self._fns = {}
        self._queue: queue.Queue = queue.Queue()
        self.packs = 0  # compiled calls made (for the load test's report)
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
        self._queue.put(job)  # queued before `arriving` is left: the worker sees one of them
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _fn(self, kind):
        if kind not in self._fns:
            fn = functools.partial(_packed, cfg=self._model.cfg, adapter=self._adapters[kind])
            self._fns[kind] = jax.jit(fn)
        return self._fns[kind]

    def _collect(self, first: Job) -> list[Job]:
        jobs, rows = [first], first.rows
        deadline = time.monotonic() + self.config.window_ms / 1000
        while len(jobs) < self.config.max_requests and rows < self.config.max_rows:
            wait = deadline - time.monotonic()
            if self._arriving == 0 and self._queue.empty():
                break  # nobody else is on the way: do not idle out the window
            try:
                job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:  # shutting down: finish what we hold
                self._queue.put(None)
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
            b = job.tokens.shape[0]
            job.future.set_result(out[start : start + job.rows, :b])
            start += job.rows

    def _compute(self, key: tuple, jobs: list[Job]) -> np.ndarray:
        kind, tail, b, s, (c, w) = key
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
            cands[i] = job.cands
            if job.payload is not None:
                payload[start : start + job.rows] = job.payload
            slot[start : start + job.rows] = i
            start += job.rows
        out = self._fn(kind)(
            self._model.params, self._adapter_params, jnp.asarray(payload), jnp.asarray(slot),
            jnp.asarray(tokens), jnp.asarray(mask), jnp.asarray(cands),
        )  # fmt: skip
        self.packs += 1
        return np.asarray(out, np.float32)
