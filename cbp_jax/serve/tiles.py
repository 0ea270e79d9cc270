"""A request's work in fixed-shape chunks: the unit the worker computes, abandons and interleaves.

A `Work` holds the jobs of one compiled tile (`shape_buckets.tile`: Q rows x B examples x S
tokens, candidate ids padded to K slots) and the list of its items, one per (job, candidate
row, batch tile). `next_chunk()` gives the next Q items' inputs (padding items fill the
last chunk), `put()` stores their scores, and once every item is in, `results()` gives each
job's P x B x C x W log-probs. Between two chunks of a Work the worker may serve another
user's chunk, or stop the Work because nobody waits for it any more.

`tile_scores` is the compiled function: row q scores payload_Q[q] on its own token tile
(B x S, left-padded; padding rows have one real token and are never read back) and reads
the log-softmax at K candidate ids.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.service.oracle import score_population


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
