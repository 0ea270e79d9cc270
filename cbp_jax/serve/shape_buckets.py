"""The batcher's shapes and joins: power-of-two buckets (what a request is priced and compiled
at), rows per abandonable chunk, and putting a split request's parts back in row order."""

from __future__ import annotations

import concurrent.futures
import functools
import threading

import numpy as np

from cbp_jax.service.oracle import TOKENS_PER_CHUNK


def bucket(n: int, floor: int = 1) -> int:
    """Smallest power of two >= max(n, floor)."""
    return 1 << (max(n, floor) - 1).bit_length()


def row_bucket(n: int) -> int:
    """Packed rows: a power of two up to 8, a multiple of 8 up to 64, then of 32 (compute is
    linear in rows on CPU, so padding rows are pure waste there: <= 12.5% up to 64)."""
    if n <= 8:
        return bucket(n)
    step = 8 if n <= 64 else 32
    return -(-n // step) * step


def padded_tokens(rows: int, batch: int, seq: int) -> int:
    """Tokens a request is priced in: P x B x S after padding to the shape buckets."""
    return rows * bucket(batch) * bucket(seq, 8)


def chunk_rows(b: int, s: int) -> int:
    """Rows (candidates) computed per chunk: a power of two with <= TOKENS_PER_CHUNK tokens
    (at least 1); abandonment is checked between chunks."""
    return 1 << (max(1, TOKENS_PER_CHUNK // (b * s)).bit_length() - 1)


def gather(parent: concurrent.futures.Future, groups, shape) -> None:
    """Resolve `parent` with the groups' results put back in row order (or their error)."""
    out = np.zeros(shape, np.float32)
    pending = [len(groups)]
    lock = threading.Lock()

    def done(idx, child):
        with lock:
            if parent.done():
                return
            if child.exception() is not None:
                parent.set_exception(child.exception())
                return
            out[:, idx] = child.result()
            pending[0] -= 1
            if pending[0] == 0:
                parent.set_result(out)

    for idx, part in groups:
        part.future.add_done_callback(functools.partial(done, idx))
