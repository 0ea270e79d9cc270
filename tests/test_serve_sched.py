"""The batcher's scheduling and compilation bounds (issues 25 and 43).

- Fairness: a small request of user B waits for one chunk of user A, even when A queued a
  backlog first (a FIFO served all of A's backlog first), and even when A's one request is
  a big one of many chunks: B's answer comes back before A's last chunk is computed
  (chunks interleaved; before issue 43, B waited for all of A's request).
- Bounded compilation (issue 43, defect 7): many distinct request shapes compile at most
  once per tile (`shape_buckets.tile_shapes`: a fixed set, whatever the shapes), a second
  pass over them compiles nothing, and the LRU keeps at most `max_compiled` executables.
- Re-bucketing: a request joining rows of different lengths is split by length on the
  server and gives the same scores as scoring it whole.
"""

import threading

import numpy as np
import pytest

from cbp_jax.contract import ScoreRequest
from cbp_jax.serve.batcher import (
    BatchConfig,
    Batcher,
    Job,
    chunks_of,
    length_groups,
    tile_for,
    tile_shapes,
)
from cbp_jax.service.oracle import TOKENS_PER_CHUNK, CBPGenerator, NoPrompt, SoftPrompt
from cbp_jax.service.provider import ScoringService
from tests.serve_tiny import tiny_generator, tiny_model


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model(0)
    art = tiny_generator(model, 0)
    adapters = {a.kind: a for a in (NoPrompt(), SoftPrompt(), CBPGenerator(16))}
    return model, adapters, art.adapter_params()


def _job(user, p, b, s, seed=0, c=2, w=1):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, s)).astype(np.int32)
    z = r.normal(size=(p, 16)).astype(np.float32)
    cands = r.integers(1, 101, (c, w)).astype(np.int32)
    return Job("task_vector", z, tokens, np.ones_like(tokens), cands, user=user)


class GatedBatcher(Batcher):
    """Holds its first chunk until `go` is set (so the queue fills meanwhile) and records,
    per chunk, its user and which of `watch`'s futures were already answered."""

    def __init__(self, *args):
        self.go, self.started, self.order, self.watch = threading.Event(), threading.Event(), [], {}
        super().__init__(*args)

    def step(self, work):
        self.started.set()
        assert self.go.wait(timeout=600), "the test never opened the gate"
        answered = sorted(name for name, f in self.watch.items() if f.done())
        self.order.append((work.user, work.done // work.q, work.chunks, answered))
        return super().step(work)


def test_small_request_of_another_user_is_not_held_behind_a_backlog(tiny):
    batcher = GatedBatcher(*tiny, BatchConfig())
    try:
        futures = [batcher.submit(_job("a", 8, 8, 32, seed=0))]  # A's first: computing
        assert batcher.started.wait(timeout=600)
        futures += [batcher.submit(_job("a", 8, 8, 32, seed=i)) for i in (1, 2, 3)]
        futures.append(batcher.submit(_job("b", 1, 1, 8, seed=4)))  # B's small request
        batcher.go.set()
        for f in futures:
            f.result(timeout=600)
    finally:
        batcher.close()
    # B waited for the chunk running when it arrived, and no other of A's work
    assert chunks_of(8, 8, 32) == 2
    assert [user for user, *_ in batcher.order] == ["a", "b"] + ["a"] * 7


def test_a_big_request_is_interleaved_with_another_users_small_one(tiny):
    batcher = GatedBatcher(*tiny, BatchConfig())
    try:
        big = batcher.submit(_job("a", 32, 16, 128, seed=0))  # 32 x 2 tiles = 64 chunks
        assert batcher.started.wait(timeout=600)  # A's first chunk is computing (held)
        small = batcher.watch["b"] = batcher.submit(_job("b", 2, 4, 16, seed=1))
        assert len(batcher._queue) == 1  # B's request waits (A's rest is not queued yet)
        batcher.go.set()
        small.result(timeout=600)
        big.result(timeout=600)
    finally:
        batcher.close()
    a_chunks = [(i, n, answered) for user, i, n, answered in batcher.order if user == "a"]
    assert len(a_chunks) == a_chunks[0][1] == chunks_of(32, 16, 128) == 64
    assert batcher.order[1][0] == "b"  # right after A's first chunk
    assert a_chunks[-1][2] == ["b"]  # B answered before A's last chunk was computed
    assert [i for i, *_ in a_chunks] == list(range(64))


def test_distinct_shapes_compile_at_most_once_per_tile(tiny):
    rng = np.random.default_rng(0)
    shapes = set()
    while len(shapes) < 48:  # distinct (P, B, S, C, W) up to S = 16
        shapes.add((int(rng.integers(1, 6)), int(rng.integers(1, 13)), int(rng.integers(2, 17)),
                    int(rng.integers(2, 5)), int(rng.integers(1, 3))))  # fmt: skip
    bound = len(tile_shapes(16))  # every tile a request of S <= 16 can run in
    batcher = Batcher(*tiny, BatchConfig(max_compiled=bound))
    try:
        for rounds in range(2):
            for i, (p, b, s, c, w) in enumerate(sorted(shapes)):
                batcher.submit(_job("u", p, b, s, seed=i, c=c, w=w)).result(600)
            if rounds == 0:
                first = batcher.compiles
    finally:
        batcher.close()
    tiles = {_job("u", *s[:3], c=s[3], w=s[4]).key() for s in shapes}
    print(f"{len(shapes)} distinct shapes, {len(tiles)} tiles hit of {bound}, {first} compiles")
    assert first == len(tiles) <= bound == 24 < len(shapes)  # 15 full tiles, 9 small
    assert batcher.compiles == first  # the second pass compiled nothing: memory stays flat


def test_lru_evicts_and_recompiles(tiny):
    batcher = Batcher(*tiny, BatchConfig(max_compiled=1))
    try:
        for s in (8, 16, 8):  # two buckets through a one-entry cache: 3 compilations
            batcher.submit(_job("u", 2, 2, s)).result(120)
    finally:
        batcher.close()
    assert batcher.compiles == 3 and len(batcher._compiled) == 1


def test_rebucketing_by_length_changes_no_score(tiny):
    model, adapters, adapter_params = tiny
    local = ScoringService(model, tuple(adapters.values()), adapter_params)
    r = np.random.default_rng(7)
    lengths = [3, 20, 5, 40, 9, 17]
    tokens = np.zeros((6, 40), np.int32)
    mask = np.zeros((6, 40), np.int32)
    for i, n in enumerate(lengths):  # left-padded rows of very different lengths
        tokens[i, 40 - n :] = r.integers(1, 101, n)
        mask[i, 40 - n :] = 1
    req = ScoreRequest("task_vector", r.normal(size=(3, 16)).astype(np.float32), tokens, mask,
                       np.array([[3], [4]]))  # fmt: skip
    job = Job(req.kind, req.payload, tokens, mask, req.candidates_CxW, user="u")
    assert len(length_groups(job)) == 4  # widths 8, 16, 32 and 40 (capped at S)
    batcher = Batcher(model, adapters, adapter_params, BatchConfig())
    try:
        got = batcher.submit(job).result(timeout=600)
    finally:
        batcher.close()
    np.testing.assert_allclose(got, local.score(req).logprobs_PxBxCxW, atol=1e-5)


def test_a_request_that_fits_a_small_tile_runs_in_one_small_chunk():
    """A light request computes an eighth of a full chunk, not a full chunk of padding;
    one that does not fit whole keeps the full tile; every tile is in the compiled bound."""
    full = TOKENS_PER_CHUNK
    assert tile_for(2, 4, 16) == (2, 4, 16) and np.prod(tile_for(2, 4, 16)) == full // 8
    assert np.prod(tile_for(3, 4, 16)) == full  # 3 rows do not fit the small tile's 2
    assert np.prod(tile_for(1, 64, 512)) == full
    shapes = set(tile_shapes(512))
    for p, b, s in [(1, 1, 8), (2, 4, 16), (4, 2, 8), (3, 4, 16), (32, 64, 512), (1, 3, 200)]:
        assert tile_for(p, b, s) in shapes
    assert chunks_of(2, 4, 16) == 1 and chunks_of(3, 4, 16) == 1 and chunks_of(32, 64, 512) == 1024
