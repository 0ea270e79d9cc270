"""Work as a unit of price and of limits (issue 43, defect 3), each failing before its fix:

- the ledger records tokens scored (P x B x S after padding) beside calls, per user and per
  run, and /v1/info states both prices;
- a request over the per-request work cap is refused 413 naming the cap, charging nothing;
- the client library splits larger work into requests under the cap by itself: the scores
  equal the unsplit request's and the calls charged are P (population splits).
"""

import dataclasses

import numpy as np
import pytest
import requests

from cbp_jax.serve.client import RemoteService
from cbp_jax.serve.limits import ServeLimits
from cbp_jax.serve.split import join_scores, split_request
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from tests.serve_live import KEYS, LiveServer

CAP = 256  # max_work_tokens of the capped server: P x B x S


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("work") / "l.sqlite", {"alice": 10_000})
    yield srv
    srv.stop()


def _cap(srv, work: int, call: int = 1 << 15) -> None:
    limits = dataclasses.replace(ServeLimits(), max_work_tokens=work, max_call_tokens=call)
    srv.server.limits = srv.server.core.limits = limits
    srv.server._public = None


def _req(p=2, b=3, s=8, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, s)).astype(np.int32)
    payload = r.normal(size=(p, 16)).astype(np.float32)
    return ScoreRequest("task_vector", payload, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def test_tokens_are_recorded_beside_calls_and_both_prices_are_published(live):
    _cap(live, 1 << 20)
    h = {"X-API-Key": KEYS["alice"]}
    before = live.server.ledger.budget("alice", "run-t")
    answer = live.post(encode_request(_req(p=3, b=3, s=9)), rid="t-1", **{"X-Run-Id": "run-t"})
    assert answer.status_code == 200
    after = live.server.ledger.budget("alice", "run-t")
    assert after["used"] - before["used"] == 3
    assert after["tokens_used"] - before["tokens_used"] == 3 * 4 * 16  # B 3 -> 4, S 9 -> 16
    assert after["run_tokens"] == 3 * 4 * 16
    info = requests.get(live.url + "/v1/info", headers=h, timeout=600).json()
    assert {"calls", "tokens"} <= set(info["prices"])
    budget = requests.get(live.url + "/v1/budget", headers=h, timeout=600).json()
    assert budget["tokens_used"] == after["tokens_used"]


def test_a_request_over_the_work_cap_is_413_naming_the_cap(live):
    _cap(live, CAP)
    try:
        used = live.used("alice")
        answer = live.post(encode_request(_req(p=8, b=4, s=16)))  # 512 > 256
        assert answer.status_code == 413, answer.text
        assert "max_work_tokens = 256" in answer.json()["error"]
        assert live.used("alice") == used
    finally:
        _cap(live, 1 << 20)


def test_the_client_splits_work_over_the_cap_and_scores_are_unchanged(live):
    big = _req(p=8, b=4, s=16, seed=3)
    client = RemoteService(live.url, KEYS["alice"], run_id="split")
    whole = client.score(big)  # under the default cap: one request
    _cap(live, CAP)
    try:
        used, packs = live.used("alice"), live.server.batcher.packs
        client = RemoteService(live.url, KEYS["alice"], run_id="split-capped")
        parts = client.score(big)
        assert live.server.batcher.packs - packs == 2  # 8 x 4 x 16 = 2 x 256
    finally:
        _cap(live, 1 << 20)
    np.testing.assert_allclose(parts.logprobs_PxBxCxW, whole.logprobs_PxBxCxW, atol=1e-5)
    assert parts.calls == 8 and live.used("alice") == used + 8


def test_split_layout_population_first_then_batch():
    req = _req(p=5, b=4, s=16)
    parts = split_request(req, max_work=128, max_call=1 << 15)  # 2 candidates x 4 x 16
    assert [[q.population for q in row] for row in parts] == [[2, 2, 1]]
    parts = split_request(req, max_work=32, max_call=32)  # one call: 2 rows of 16
    assert [[(q.population, q.num_examples) for q in row] for row in parts] == [[(1, 2)] * 5] * 2
    fake = [[np.full((q.population, q.num_examples, 1, 1), i) for q in row]
            for i, row in enumerate(parts)]  # fmt: skip
    assert join_scores(fake).shape == (5, 4, 1, 1)
    assert split_request(req, 1 << 20, 1 << 15) == [[req]]
