"""Regression tests for the scoring service as a paid API (issue 43), each failing before
its fix:

1. An empty array with a huge axis (e.g. shape [2**64 - 1, 0]) in any array field: 400
   naming the field, not a 500 from numpy's reshape.
4. Failed keys from one address never lock out a valid key from that address; failures
   are throttled per address and per key prefix (429 with Retry-After).
5. A retry of a request id still in flight waits for that attempt and gets its replay,
   also at the budget edge (it used to ask for a second budget hold and get 402).
6. Load shedding: bounded per-user and global queues answer 429 / 503 with Retry-After
   (nothing charged), and the client waits at least Retry-After before it retries.
9. Content-Type other than application/msgpack: 415; too many or too large headers: 431.
"""

import concurrent.futures
import json
import socket
import threading

import msgpack
import numpy as np
import pytest
import requests

from cbp_jax.serve.client import RemoteService, RetryPolicy
from cbp_jax.serve.limits import AuthThrottle, GuardConfig
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


class Gate:
    """Holds the server's compiled calls until `open()`; `entered` is set when one waits."""

    def __init__(self, batcher):
        self.entered, self._go = threading.Event(), threading.Event()
        self._inner, batcher._run_chunk = batcher._run_chunk, self._run_chunk

    def _run_chunk(self, kind, args):
        self.entered.set()
        assert self._go.wait(timeout=600), "the test never opened the gate"
        return self._inner(kind, args)

    def open(self):
        self._go.set()


def _until(condition, what: str, deadline_s: float = 600.0) -> None:
    """Wait for `condition()` (a readiness signal polled, not a timing assumption)."""
    done = threading.Event()
    while not condition():
        if done.wait(0.01) or deadline_s <= 0:
            raise AssertionError(f"never happened: {what}")
        deadline_s -= 0.01


def _waiting(server) -> int:
    inflight = getattr(server, "inflight", None)  # (absent before issue 43's fix)
    return 0 if inflight is None else inflight.waiting


def test_a_retry_of_an_id_in_flight_at_the_budget_edge_gets_the_replay(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 3})  # room for one request of P = 3
    gate = Gate(srv.server.batcher)
    try:
        body, headers = encode_request(_req(p=3)), {"X-Client-Id": "client-1"}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.post, body, rid="edge-1", timeout=600, **headers)
            assert gate.entered.wait(timeout=600)  # the first attempt is computing
            retry = pool.submit(srv.post, body, rid="edge-1", timeout=600, **headers)
            _until(lambda: retry.done() or _waiting(srv.server) == 1, "retry waiting")
            gate.open()
            first, retry = first.result(), retry.result()
        assert first.status_code == 200 and first.headers["X-Charged"] == "3"
        assert retry.status_code == 200, retry.text
        assert retry.headers["X-Replayed"] == "1" and retry.headers["X-Charged"] == "0"
        assert retry.headers["X-Replay-Own"] == "1" and retry.content == first.content
        assert srv.used("alice") == 3
    finally:
        gate.open()
        srv.stop()


def test_another_body_under_an_id_in_flight_is_409_and_charges_nothing(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100})
    gate = Gate(srv.server.batcher)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.post, encode_request(_req(seed=1)), rid="x-1", timeout=600)
            assert gate.entered.wait(timeout=600)
            other = pool.submit(srv.post, encode_request(_req(seed=2)), rid="x-1", timeout=600)
            queue = srv.server.batcher._queue
            _until(lambda: other.done() or len(queue) > 0, "answered or queued")
            gate.open()
            first, other = first.result(), other.result()
        assert first.status_code == 200
        assert other.status_code == 409 and srv.used("alice") == 2
        assert srv.server.batcher.packs == 1  # refused before any compute
    finally:
        gate.open()
        srv.stop()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json", "msgpack"])
def test_a_score_body_of_another_content_type_is_415(live, content_type):
    used = live.used("alice")
    answer = live.post(encode_request(_req()), **{"Content-Type": content_type or ""})
    assert answer.status_code == 415, answer.text
    assert live.used("alice") == used
    ok = live.post(encode_request(_req()), **{"Content-Type": "application/msgpack; x=1"})
    assert ok.status_code == 200


def test_too_many_or_too_large_headers_are_431(live):
    many = {f"X-Pad-{i}": "1" for i in range(2000)}
    assert live.post(encode_request(_req()), **many).status_code == 431
    with socket.create_connection(("127.0.0.1", live.port), timeout=600) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20))
        reply = s.recv(4096)  # answered while the header still streams in, not reset
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]
    assert live.post(encode_request(_req())).status_code == 200  # still serving


def test_full_queues_shed_requests_with_retry_after_and_charge_nothing(tmp_path):
    guard = GuardConfig(max_queued_per_user=1, max_queued=2)
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100, "bob": 100, "carol": 100}, guard=guard)
    gate = Gate(srv.server.batcher)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.post, encode_request(_req(seed=1)), timeout=600)
            assert gate.entered.wait(timeout=600)  # alice's request computes (held)
            mine = srv.post(encode_request(_req(seed=2)))  # alice's queue (1) is full
            queued = pool.submit(srv.post, encode_request(_req(seed=3)), user="bob", timeout=600)
            _until(lambda: queued.done() or len(srv.server.batcher._queue) > 0, "bob queued")
            full = srv.post(encode_request(_req(seed=4)), user="carol")  # the server's (2)
            gate.open()
            assert first.result().status_code == 200 and queued.result().status_code == 200
        assert mine.status_code == 429 and int(mine.headers["Retry-After"]) >= 1, mine.text
        assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1, full.text
        assert srv.used("alice") == 2 and srv.used("bob") == 2 and srv.used("carol") == 0
        assert srv.post(encode_request(_req(seed=4)), user="carol").status_code == 200
    finally:
        gate.open()
        srv.stop()


class _Answers:
    """A requests session that answers from a list of (status, headers, json body)."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def request(self, method, url, **kw):
        status, headers, body = self.answers.pop(0)
        resp = requests.Response()
        resp.status_code, resp._content = status, json.dumps(body).encode()
        resp.headers.update(headers)
        return resp


def test_the_client_waits_at_least_the_servers_retry_after(monkeypatch):
    import cbp_jax.serve.client as client_module

    slept = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    client = RemoteService("http://127.0.0.1:9", "key-00000000", retry=RetryPolicy(backoff_s=0.1))
    budget = {"user": "a", "budget": 9, "used": 0, "remaining": 9, "run_used": 0}
    full = {"error": "full"}
    session = _Answers((503, {"Retry-After": "7"}, full), (429, {"Retry-After": "3"}, full),
                       (200, {}, budget))  # fmt: skip
    client._session = lambda: session
    assert client.budget() == budget
    assert slept == [7.0, 3.0]  # not the 0.1 s / 0.2 s of its own backoff


def test_the_openapi_schema_describes_the_msgpack_body(live):
    schema = requests.get(live.url + "/openapi.json", timeout=600).json()
    body = schema["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/msgpack"]
    props = body["schema"]["properties"]
    assert {"kind", "payload", "tokens", "mask", "candidates"} == set(props)
    assert props["tokens"]["properties"]["shape"]["items"]["maximum"] == 1 << 24
