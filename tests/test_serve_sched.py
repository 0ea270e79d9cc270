"""The batcher's scheduling and compilation bounds (issue 25).

- Fairness: a small request of user B waits behind at most one request of user A, even
  when A queued a backlog first (a FIFO served all of A's backlog first).
- Bounded compilation: many distinct request shapes compile at most once per shape bucket,
  and the LRU keeps at most `max_compiled` executables.
- Re-bucketing: a request joining rows of different lengths is split by length on the
  server and gives the same scores as scoring it whole.
"""

import threading

import numpy as np
import pytest

from cbp_jax.contract import ScoreRequest
from cbp_jax.serve.batcher import BatchConfig, Batcher, Job, length_groups, row_bucket
from cbp_jax.service.oracle import CBPGenerator, NoPrompt, SoftPrompt
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
    """Holds its first compiled call until `go` is set, so the queue fills meanwhile."""

    def __init__(self, *args):
        self.go, self.started, self.order = threading.Event(), threading.Event(), []
        super().__init__(*args)

    def _compute(self, key, jobs):
        self.started.set()
        self.go.wait(timeout=600)
        self.order += [j.user + str(j.rows) for j in jobs]
        return super()._compute(key, jobs)


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
    # B waited for the batch running when it arrived, and no other of A's requests
    assert batcher.order == ["a8", "b1", "a8", "a8", "a8"]


def test_distinct_shapes_compile_once_per_bucket_and_the_cache_is_bounded(tiny):
    batcher = Batcher(*tiny, BatchConfig(max_compiled=4))
    shapes = [(p, b, s, c, w) for p in (3, 4) for b in (3, 4) for s in (5, 7, 8)
              for c, w in ((2, 1), (3, 2))]  # fmt: skip
    try:
        for i, shape in enumerate(shapes):
            batcher.submit(_job("u", *shape[:3], seed=i, c=shape[3], w=shape[4])).result(120)
    finally:
        batcher.close()
    buckets = {_job("u", *s[:3], c=s[3], w=s[4]).key() + (row_bucket(s[0]),) for s in shapes}
    print(f"{len(shapes)} distinct shapes, {len(buckets)} buckets, {batcher.compiles} compiles")
    assert len(buckets) == 2 < len(shapes) == 24
    assert batcher.compiles <= len(buckets)
    assert len(batcher._compiled) <= 4


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
