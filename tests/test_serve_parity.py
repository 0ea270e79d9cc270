"""The HTTP service and the in-process service give the same scores and the same charges.

One sequence of requests, run against an in-process `ScoringService` and against the
HTTP server (same tiny model and generator, same budget): eager requests, oracle calls
over two length buckets (one call = one batch = P calls, sent as ONE HTTP request), a
malformed payload (refused, nothing charged) and budget exhaustion (refused whole).
"""

import jax
import numpy as np
import pytest

from cbp_jax.contract import BudgetExhaustedError, MalformedRequestError, ScoreRequest
from cbp_jax.serve.client import RemoteService, RetryPolicy
from cbp_jax.service.oracle import CBPGenerator, DeepPrompt, NoPrompt, SoftPrompt
from cbp_jax.service.provider import ScoringService
from tests.serve_live import KEYS, LiveServer
from tests.serve_tiny import tiny_generator, tiny_model

BUDGET = 20
CANDS = np.array([[3, 5], [4, 6]], np.int32)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("parity") / "l.sqlite", {"alice": BUDGET})
    model = tiny_model(0)
    art = tiny_generator(model, 0)
    adapters = (NoPrompt(), SoftPrompt(), DeepPrompt(), CBPGenerator(16))
    local = ScoringService(model, adapters, art.adapter_params(), budget=BUDGET)
    # one attempt per request: a retried request whose first attempt was charged comes back
    # as a free replay, and this client object would count 0 for it (see the report)
    patient = RetryPolicy(timeout_s=900, deadline_s=900)
    remote = RemoteService(srv.url, KEYS["alice"], run_id="parity", retry=patient)
    yield local, remote, srv
    srv.stop()


def _rows(r, b, width):
    """Left-padded b x width rows of random lengths."""
    tokens, mask = np.zeros((b, width), np.int32), np.zeros((b, width), np.int32)
    for i, n in enumerate(r.integers(2, width + 1, b)):
        tokens[i, width - n :] = r.integers(1, 101, n)
        mask[i, width - n :] = 1
    return tokens, mask


def _request(r, kind, p, b=3):
    tokens, mask = _rows(r, b, 16)
    payload = {
        "task_vector": r.normal(size=(p, 16)),
        "prompt": 0.1 * r.normal(size=(p, 2, 48)),
        "none": None,
    }[kind]
    payload = None if payload is None else payload.astype(np.float32)
    return ScoreRequest(kind, payload, tokens, mask, CANDS)


def _eager(seed, kind, p):
    return lambda service: service.score(_request(np.random.default_rng(seed), kind, p))


def _both(local, remote, fn):
    """fn(service) on both sides: (results or exception types, calls used after)."""
    out = []
    for service in (local, remote):
        try:
            out.append((fn(service), service.calls_used))
        except (MalformedRequestError, BudgetExhaustedError) as e:
            out.append((type(e), service.calls_used))
    return out


def test_same_scores_and_charges_in_process_and_over_http(pair):
    local, remote, srv = pair
    r = np.random.default_rng(0)
    buckets = (_rows(r, 3, 8), _rows(r, 2, 24))  # two length buckets of one batch
    z = r.normal(size=(5, 16)).astype(np.float32)

    def oracle_call(service, jit=False):
        service.reserve(5)
        oracle = service.oracle("task_vector")
        call = (
            jax.jit(lambda o, z, bk: o(z, bk, CANDS)) if jit else (lambda o, z, bk: o(z, bk, CANDS))
        )
        return np.asarray(call(oracle, z, buckets))

    bad = _request(r, "task_vector", 2)
    bad = ScoreRequest(
        bad.kind, np.zeros((2, 15), np.float32), *(bad.tokens_BxS, bad.mask_BxS), CANDS
    )
    steps = [
        ("eager task vector P=4", _eager(1, "task_vector", 4)),
        ("eager prompt P=2", _eager(2, "prompt", 2)),
        ("eager no prompt", _eager(3, "none", 1)),
        ("oracle, 2 buckets, P=5", oracle_call),
        ("malformed payload", lambda s: s.score(bad)),
        ("oracle under jit, P=5", lambda s: oracle_call(s, jit=True)),
        ("over budget: P=4 with 3 left", _eager(4, "task_vector", 4)),
        ("the last 3 calls", _eager(5, "task_vector", 3)),
        ("exhausted", _eager(6, "none", 1)),
    ]  # fmt: skip
    for name, fn in steps:
        (got_l, used_l), (got_r, used_r) = _both(local, remote, fn)
        assert used_l == used_r, name
        if isinstance(got_l, type):
            assert got_l is got_r, name
            continue
        arrays = [
            g.logprobs_PxBxCxW if hasattr(g, "logprobs_PxBxCxW") else g for g in (got_l, got_r)
        ]
        np.testing.assert_allclose(arrays[1], arrays[0], atol=1e-5, err_msg=name)
        if hasattr(got_l, "calls"):
            assert (got_l.calls, got_l.examples, got_l.tokens) == (
                got_r.calls,
                got_r.examples,
                got_r.tokens,
            ), name
    assert local.calls_used == remote.calls_used == srv.used("alice") == BUDGET
    assert srv.server.commits == 6  # 6 answered steps: each oracle call (2 buckets) 1 request
