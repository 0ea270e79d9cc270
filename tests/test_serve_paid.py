"""Regression tests for the scoring service as a paid API (issue 43), each failing before
its fix:

1. An empty array with a huge axis (e.g. shape [2**64 - 1, 0]) in any array field: 400
   naming the field, not a 500 from numpy's reshape.
4. Failed keys from one address never lock out a valid key from that address; failures
   are throttled per address and per key prefix (429 with Retry-After).
"""

import msgpack
import numpy as np
import pytest

from cbp_jax.serve.guard import GuardConfig
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from tests.serve_live import LiveServer

GUARD = GuardConfig(auth_failures=5, auth_window_s=600)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("paid") / "l.sqlite",
                     {"alice": 10_000, "bob": 10_000}, guard=GUARD)  # fmt: skip
    yield srv
    srv.stop()


def _req(p=2, b=3, s=8, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, s)).astype(np.int32)
    payload = r.normal(size=(p, 16)).astype(np.float32)
    return ScoreRequest("task_vector", payload, tokens, np.ones_like(tokens), np.array([[3], [4]]))


HUGE_EMPTY = ([2**64 - 1, 0], [2**63, 0], [2**40, 2**40, 0], [0, 2**63], [2**31, 2**31, 0])


@pytest.mark.parametrize("field", ["payload", "tokens", "mask", "candidates"])
@pytest.mark.parametrize("shape", HUGE_EMPTY, ids=str)
def test_an_empty_array_with_a_huge_axis_is_400_naming_the_field(live, field, shape):
    body = msgpack.unpackb(encode_request(_req()), raw=False)
    body[field] = {"dtype": body[field]["dtype"], "shape": shape, "data": b""}
    used = live.used("alice")
    answer = live.post(msgpack.packb(body, use_bin_type=True))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{field}:")
    assert live.used("alice") == used
