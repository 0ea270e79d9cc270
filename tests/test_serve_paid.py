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
import requests

from cbp_jax.serve.guard import AuthThrottle, GuardConfig
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from tests.serve_live import KEYS, LiveServer

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


def test_failed_keys_never_lock_out_a_valid_key_from_the_same_address(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100, "bob": 100}, guard=GUARD)
    try:
        body = encode_request(_req())
        codes = [srv.post(body, user=f"wrong-key-{i:04d}").status_code for i in range(7)]
        assert codes == [401] * 5 + [429] * 2  # the same address as alice and bob (loopback)
        refused = srv.post(body, user="wrong-key-9999")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert srv.post(body).status_code == 200
        answer = srv.post(body, user="bob", rid="bob-1")
        assert answer.status_code == 200 and srv.used("bob") == 2
        info = requests.get(srv.url + "/v1/info", headers={"X-API-Key": KEYS["alice"]}, timeout=60)
        assert info.status_code == 200
    finally:
        srv.stop()


def test_failures_are_counted_per_address_and_per_key_prefix():
    throttle = AuthThrottle(GuardConfig(auth_failures=3, auth_window_s=600))
    for i in range(3):
        throttle.failed(f"10.0.0.{i}", "guess-aaaa")  # one prefix from many addresses
    assert throttle.retry_after("10.0.0.99", "guess-bbbb") > 0  # that prefix: throttled
    assert throttle.retry_after("10.0.0.99", "other-key") == 0  # another prefix: not
    for _ in range(3):
        throttle.failed("10.0.0.7", f"{_}xyz-key")  # one address, many prefixes
    assert throttle.retry_after("10.0.0.7", "zzzz-key") > 0
    assert throttle.retry_after("10.0.0.8", "zzzz-key") == 0
