"""The batcher's shapes and joins: power-of-two buckets (what a request is priced at), the
fixed chunk shapes ("tiles") it is compiled and computed in, and putting a split request's
parts back in row order.

A tile is (rows Q, batch B, sequence S) with S a power of two >= 8, B a power of two and
Q x B x S = TOKENS_PER_CHUNK (one candidate on B examples is one row; S over the chunk: Q =
B = 1). A request of batch b and sequence s runs in the tile with S = bucket(s, 8) and B =
min(bucket(b), TOKENS_PER_CHUNK // S): its batch is cut into tiles of B rows, its
candidates fill the Q rows, padding rows fill the last chunk. A request small enough to fit
whole in one tile of TOKENS_PER_CHUNK / SMALL_SHARE tokens runs in that small tile instead
(`tile_for`), so a light request beside a big one computes a short chunk, not a full one
of padding. So whatever the clients send, one adapter payload shape compiles at most
`len(tile_shapes(max_seq_len))` programs (50 for S <= 512), a full chunk costs the same
time whatever the request, and the worker can stop or switch between any two chunks."""

from __future__ import annotations

import concurrent.futures
import functools
import threading

import numpy as np

from cbp_jax.service.oracle import TOKENS_PER_CHUNK

SMALL_SHARE = 8  # a small tile holds TOKENS_PER_CHUNK / SMALL_SHARE tokens


def bucket(n: int, floor: int = 1) -> int:
    """Smallest power of two >= max(n, floor)."""
    return 1 << (max(n, floor) - 1).bit_length()


def padded_tokens(rows: int, batch: int, seq: int) -> int:
    """Tokens a request is priced in: P x B x S after padding to the shape buckets."""
    return rows * bucket(batch) * bucket(seq, 8)


def tile(b: int, s: int, tokens: int = TOKENS_PER_CHUNK) -> tuple[int, int, int]:
    """(rows Q, batch B, sequence S) of the chunk a request of batch b, sequence s runs in."""
    seq = bucket(s, 8)
    batch = min(bucket(b), max(1, tokens // seq))
    return max(1, tokens // (seq * batch)), batch, seq


def tile_for(rows: int, b: int, s: int, tokens: int = TOKENS_PER_CHUNK) -> tuple[int, int, int]:
    """The tile a request of `rows` candidates, batch b, sequence s runs in: the small tile
    (tokens / SMALL_SHARE) when the whole request fits in one chunk of it, else the full one."""
    small = tokens // SMALL_SHARE
    q, batch, seq = tile(b, s, small)
    if q * batch * seq <= small and rows * -(-b // batch) <= q:
        return q, batch, seq
    return tile(b, s, tokens)


def _tiles(max_seq: int, tokens: int) -> list[tuple[int, int, int]]:
    out, seq = [], 8
    while seq <= bucket(max_seq, 8):
        out += [tile(1 << k, seq, tokens) for k in range(max(1, tokens // seq).bit_length())]
        seq *= 2
    return out


def tile_shapes(max_seq: int, tokens: int = TOKENS_PER_CHUNK) -> list[tuple[int, int, int]]:
    """Every tile a request of sequence <= max_seq can run in: the compiled shapes' bound."""
    small = tokens // SMALL_SHARE
    full = _tiles(max_seq, tokens)
    return full + [t for t in _tiles(max_seq, small) if np.prod(t) <= small and t not in full]


def chunks_of(p: int, b: int, s: int, tokens: int = TOKENS_PER_CHUNK) -> int:
    """Chunks a request of population p, batch b, sequence s is computed in (alone)."""
    q, batch, _ = tile_for(p, b, s, tokens)
    return -(-p * -(-b // batch) // q)


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
