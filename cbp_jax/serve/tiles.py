"""The batcher's shapes and chunks: a request's work in fixed-shape tiles, computed chunk by
chunk (the unit the worker computes, abandons and interleaves).

A tile is (rows Q, batch B, sequence S), S a power of two >= 8, B a power of two, Q x B x S
= TOKENS_PER_CHUNK (one row: one candidate on B examples). A request of batch b, sequence s
runs in S = bucket(s, 8), B = min(bucket(b), TOKENS_PER_CHUNK // S): its batch cut into
tiles of B rows, its candidates filling the Q rows, padding rows the last chunk; one that
fits whole in a tile of TOKENS_PER_CHUNK / SMALL_SHARE tokens runs in that small tile
(`tile_for`). So one payload shape compiles at most `len(tile_shapes(max_seq_len))`
programs (50 for S <= 512). A request is priced at its power-of-two buckets.

`Work` holds the jobs of one tile key, one item per (job, candidate row, batch tile):
`next_chunk()` gives the next Q items' inputs, `put()` stores their scores, `results()`
each job's P x B x C x W log-probs. `tile_scores` is the compiled function; `gather` puts a
split request's parts back in row order.
"""

from __future__ import annotations

import concurrent.futures
import functools
import threading

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.service.oracle import TOKENS_PER_CHUNK, score_population

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


def tile_scores(model_params, adapter_params, payload_Q, tokens_QxBxS, mask_QxBxS, cands_QxK,
                *, cfg, adapter):  # fmt: skip
    """Q x B x K log-probs: row q scores payload_Q[q] on tokens_QxBxS[q] at cands_QxK[q]."""
    none = adapter.kind == "none"

    def one(args):
        payload_i, tokens, mask, cands = args
        pl = None if none else jnp.expand_dims(payload_i, adapter.payload_axis)
        return score_population(
            model_params, adapter_params, pl, tokens, mask, cands[:, None],
            cfg=cfg, adapter=adapter, population_chunk=None,
        )[0, :, :, 0]  # fmt: skip

    return jax.vmap(one)((payload_Q, tokens_QxBxS, mask_QxBxS, cands_QxK))


class Work:
    """The jobs of one tile key (kind, payload tail, (Q, B, S), K), computed chunk by chunk."""

    def __init__(self, key: tuple, jobs: list):
        self.key, self.jobs = key, jobs
        self.kind, tail, (self.q, self.b, self.s), self.k = key
        self.user = jobs[0].user  # whose turn it takes in the fair queue
        self.failed = False
        self._tail = tail or (1,)
        self._inputs, self._outs, self.items = [], [], []
        for n, job in enumerate(jobs):
            self._inputs.append(self._padded(job))
            tiles = -(-job.tokens.shape[0] // self.b)
            self._outs.append(np.zeros((job.rows, tiles * self.b, self.k), np.float32))
            self.items += [(n, i, j) for j in range(tiles) for i in range(job.rows)]
        self.done = 0  # items computed

    @property
    def chunks(self) -> int:
        return -(-len(self.items) // self.q)

    @property
    def over(self) -> bool:
        return self.failed or self.done >= len(self.items)

    def abandoned(self) -> bool:
        return all(job.abandoned() for job in self.jobs)

    def _padded(self, job):
        """The job's tokens and mask, B-row tiles of S left-padded columns, and its K ids."""
        b, s = job.tokens.shape
        rows = -(-b // self.b) * self.b
        tokens = np.zeros((rows, self.s), np.int32)
        mask = np.zeros((rows, self.s), np.int32)
        mask[:, -1] = 1  # padding rows: one real token, never read back
        tokens[:b, self.s - s :] = job.tokens
        mask[:b] = 0
        mask[:b, self.s - s :] = job.mask
        cands = np.zeros((self.k,), np.int32)
        cands[: job.cands.size] = job.cands.reshape(-1)
        return tokens, mask, cands

    def next_chunk(self) -> tuple:
        """(payload Q x tail, tokens Q x B x S, mask Q x B x S, candidate ids Q x K)."""
        payload = np.zeros((self.q, *self._tail), np.float32)
        tokens = np.zeros((self.q, self.b, self.s), np.int32)
        mask = np.zeros((self.q, self.b, self.s), np.int32)
        mask[:, :, -1] = 1
        cands = np.zeros((self.q, self.k), np.int32)
        for r, (n, i, j) in enumerate(self.items[self.done : self.done + self.q]):
            job_tokens, job_mask, cands[r] = self._inputs[n]
            tokens[r] = job_tokens[j * self.b : (j + 1) * self.b]
            mask[r] = job_mask[j * self.b : (j + 1) * self.b]
            if self.jobs[n].payload is not None:
                payload[r] = self.jobs[n].payload[i]
        return payload, tokens, mask, cands

    def put(self, out_QxBxK: np.ndarray) -> None:
        """Store the scores of the chunk `next_chunk` gave last."""
        for r, (n, i, j) in enumerate(self.items[self.done : self.done + self.q]):
            self._outs[n][i, j * self.b : (j + 1) * self.b] = out_QxBxK[r]
        self.done += self.q

    def results(self) -> list[np.ndarray]:
        """Each job's P x B x C x W log-probs."""
        out = []
        for job, scores in zip(self.jobs, self._outs, strict=True):
            (b, _), (c, w) = job.tokens.shape, job.cands.shape
            out.append(scores[:, :b, : c * w].reshape(job.rows, b, c, w))
        return out
