"""Regression tests for the scoring service's defects of issue 25 (each failed before its fix).

1. Parallel requests with one request id and different bodies: one is scored, the others
   get 409; none receives another body's scores.
2. The users file is the source of truth: removed users' keys stop working, a removed
   user's key can go to a new name, and a malformed line does not echo its key.
3. Shapes whose product overflows int64, a 1-D prompt and a 2-D deep prompt: 400, not 500.
4. Payloads finite on the wire but not after the cast (float64 1e300), or whose scores are
   not finite (float32 3e38): 400 and nothing charged.
Also: read timeout (408), the failed-authentication throttle (429), and a client's count of
calls when the answer to a charged attempt was lost (X-Replay-Own).
"""

import concurrent.futures
import socket

import msgpack
import numpy as np
import pytest
import requests

from cbp_jax.serve.client import RemoteService, RetryPolicy
from cbp_jax.serve.launch import read_users
from cbp_jax.serve.ledger import Ledger, RequestIdConflictError, UserSpec
from cbp_jax.serve.limits import GuardConfig
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from tests.serve_live import KEYS, LiveServer, users

GUARD = GuardConfig(read_timeout_s=1.0, auth_failures=5, auth_window_s=600)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("hard") / "ledger.sqlite",
                     {"alice": 10_000, "bob": 10_000}, guard=GUARD)  # fmt: skip
    yield srv
    srv.stop()


def _req(kind="task_vector", payload=None, p=2, b=3, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, 8)).astype(np.int32)
    if payload is None and kind == "task_vector":
        payload = r.normal(size=(p, 16)).astype(np.float32)
    return ScoreRequest(kind, payload, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def _array(shape, dtype="<f4", data=b""):
    return {"dtype": dtype, "shape": shape, "data": data}


def _body_with(**fields):
    body = msgpack.unpackb(encode_request(_req()), raw=False)
    body.update(fields)
    return msgpack.packb(body, use_bin_type=True)


def test_racing_request_ids_with_different_bodies_never_share_scores(live):
    bodies = [encode_request(_req(seed=s)) for s in range(6)]
    used = live.used("bob")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda b: live.post(b, "bob", rid="race-1"), bodies))
    ok = [i for i, a in enumerate(answers) if a.status_code == 200]
    assert len(ok) == 1, [a.status_code for a in answers]
    assert all(a.status_code == 409 for i, a in enumerate(answers) if i not in ok)
    alone = live.post(bodies[ok[0]], "bob", rid="race-1-again")
    assert answers[ok[0]].content == alone.content  # the winner got its own scores
    assert live.used("bob") == used + 2 * 2  # the winner and its re-send, P = 2 each


def test_ledger_compares_the_body_inside_the_claiming_transaction(tmp_path):
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.sync_users(users(alice=10))
    ledger.hold("alice", 2)
    ledger.hold("alice", 2)  # both passed `lookup` before either committed
    assert ledger.commit("alice", "rid", "", "body-a", 2, b"scores-a") == (b"scores-a", 2)
    with pytest.raises(RequestIdConflictError):
        ledger.commit("alice", "rid", "", "body-b", 2, b"scores-b")
    assert ledger.budget("alice")["used"] == 2
    assert ledger.commit("alice", "rid", "", "body-a", 0, b"x") == (b"scores-a", 0)


def test_users_file_is_the_source_of_truth(tmp_path):
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.sync_users(users(alice=10, bob=10))
    ledger.hold("bob", 3)
    ledger.commit("bob", None, "", "h", 3, b"")
    assert ledger.sync_users(users(alice=10)) == ["bob"]  # bob removed: revoked
    assert ledger.authenticate(KEYS["bob"]) is None
    assert ledger.authenticate(KEYS["alice"]) == "alice"
    # bob's key goes to a new user (no IntegrityError at start-up)
    dave = UserSpec("dave", KEYS["bob"], 5)
    assert ledger.sync_users([*users(alice=10), dave]) == []
    assert ledger.authenticate(KEYS["bob"]) == "dave"
    ledger.sync_users(users(alice=10, bob=10))  # bob back: keeps what he used
    assert ledger.budget("bob")["used"] == 3 and ledger.authenticate(KEYS["bob"]) == "bob"
    with pytest.raises(ValueError, match="distinct"):
        ledger.sync_users([UserSpec("x", KEYS["alice"], 1), UserSpec("y", KEYS["alice"], 1)])


def test_malformed_users_line_does_not_echo_its_key(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("alice:alice-key-0001:10\ncarol:very-secret-key-42\n")
    with pytest.raises(ValueError) as err:
        read_users(str(path), [])
    assert "line 2" in str(err.value) and "very-secret-key-42" not in str(err.value)
    with pytest.raises(ValueError, match="share one API key"):
        read_users(None, ["a:same-key-123:1", "b:same-key-123:1"])


BAD_SHAPES = {
    "tokens shape overflows int64": _body_with(tokens=_array([2**32, 2**32], "<i4")),
    "payload shape overflows int64": _body_with(payload=_array([2**62, 2**3, 2**3])),
    "1-D prompt": _body_with(kind="prompt", payload=_array([48], data=bytes(4 * 48))),
    "2-D deep prompt": _body_with(kind="deep_prompt", payload=_array([3, 48], data=bytes(576))),
}


@pytest.mark.parametrize("name", list(BAD_SHAPES))
def test_bad_shapes_are_400_not_500(live, name):
    used = live.used("alice")
    answer = live.post(BAD_SHAPES[name])
    assert answer.status_code == 400, answer.text
    assert live.used("alice") == used


NOT_FINITE = {  # name: (request, refused before any compute)
    "float64 1e300 task vector": (_req(payload=np.full((2, 16), 1e300)), True),
    "float64 1e300 prompt": (_req("prompt", np.full((1, 2, 48), 1e300)), True),
    # finite in float32, but the scores are NaN: caught on the outputs
    "float32 3e38 task vector": (_req(payload=np.full((2, 16), 3e38, np.float32)), False),
    "float32 3e38 deep prompt": (
        _req("deep_prompt", np.full((3, 1, 2, 48), 3e38, np.float32)),
        False,
    ),
}


@pytest.mark.parametrize("name", list(NOT_FINITE))
def test_payloads_not_finite_in_the_compute_dtype_or_scores_are_refused(live, name):
    request, before_compute = NOT_FINITE[name]
    used, packs = live.used("alice"), live.server.batcher.packs
    answer = live.post(encode_request(request))
    assert answer.status_code == 400, answer.text
    assert "finite" in answer.json()["error"]
    assert live.used("alice") == used
    assert (live.server.batcher.packs == packs) == before_compute


def test_a_body_shorter_than_its_content_length_times_out(live):
    # the client waits up to 600 s: a server that held the connection open would fail it
    with socket.create_connection(("127.0.0.1", live.port), timeout=600) as s:
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEYS['alice']}\r\n"
            "Content-Type: application/msgpack\r\nContent-Length: 1000\r\n\r\n"
        )
        s.sendall(head.encode() + b"\x80" * 10)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:100]  # answered after the 1 s read timeout


def test_failed_keys_are_throttled_per_address(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100}, guard=GUARD)
    try:
        body = encode_request(_req())
        codes = [srv.post(body, user=f"wrong-key-{i:04d}").status_code for i in range(7)]
        assert codes == [401] * 5 + [429] * 2
        assert srv.post(body).status_code == 200  # a good key is never throttled (issue 43)
        assert srv.used("alice") == 2
    finally:
        srv.stop()


def test_request_timeout_is_503_uncharged_and_the_worker_survives(tmp_path):
    srv = LiveServer(
        tmp_path / "l.sqlite", {"alice": 100}, guard=GuardConfig(request_timeout_s=1e-3)
    )
    try:
        body = encode_request(_req())
        late = srv.post(body)  # its first compilation alone takes far longer than 1 ms
        assert late.status_code == 503 and srv.used("alice") == 0
        srv.server.guard = GuardConfig()
        assert srv.post(body).status_code == 200  # the scoring thread outlived the cancel
        assert srv.used("alice") == 2
    finally:
        srv.stop()


class _LosesFirstAnswer:
    """A requests session whose first POST reaches the server (which charges it) and then
    times out on the client side, as a dropped connection after the commit would."""

    def __init__(self):
        self.inner, self.lost = requests.Session(), 0

    def request(self, method, url, **kw):
        resp = self.inner.request(method, url, **kw)
        if method == "POST" and not self.lost:
            self.lost += 1
            raise requests.Timeout("answer lost after the server committed")
        return resp


def test_calls_used_counts_a_charged_attempt_whose_answer_was_lost(live):
    """The retry is answered from the record for 0 calls; the server says the recorded charge
    was this client's own (X-Replay-Own), so calls_used still equals what the ledger charged.
    Another client object replaying the same id (a resumed process) is not charged it."""
    fast = RetryPolicy(timeout_s=30, deadline_s=30, backoff_s=0.05, backoff_max_s=0.1)
    client = RemoteService(live.url, KEYS["alice"], run_id="lost-answer", retry=fast)
    session = _LosesFirstAnswer()
    client._session = lambda: session
    used = live.used("alice")
    req = _req(p=3, seed=77)
    out = client.score(req)
    assert session.lost == 1 and live.used("alice") == used + 3
    assert client.calls_used == 3 and out.calls == 3
    other = RemoteService(live.url, KEYS["alice"], run_id="lost-answer", retry=fast)
    other._eager = 0  # the same scope, hence the same request id, as a resumed process sends
    again = other.score(req)
    assert live.used("alice") == used + 3 and other.calls_used == 0 and again.calls == 0
    np.testing.assert_array_equal(again.logprobs_PxBxCxW, out.logprobs_PxBxCxW)


def test_a_ledger_file_from_before_client_ids_opens_and_keeps_its_records(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE users (name TEXT PRIMARY KEY, key_sha256 TEXT UNIQUE NOT NULL, "
        "budget INTEGER NOT NULL, used INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE records (user TEXT NOT NULL, request_id TEXT NOT NULL, run_id TEXT NOT "
        "NULL, body_sha256 TEXT NOT NULL, calls INTEGER NOT NULL, response BLOB NOT NULL, "
        "created REAL NOT NULL, PRIMARY KEY (user, request_id));"
    )
    db.execute("INSERT INTO records VALUES ('alice', 'r1', '', 'h', 2, x'01', 0)")
    db.commit()
    db.close()
    ledger = Ledger(str(path))
    assert ledger.lookup("alice", "r1", "h") == b"\x01"
    assert ledger.charged_client("alice", "r1") == ""
    ledger.sync_users([UserSpec("alice", "k" * 8, 10)])
    ledger.hold("alice", 3)
    assert ledger.commit("alice", "r2", "", "h2", 3, b"\x02", "me") == (b"\x02", 3)
    assert ledger.charged_client("alice", "r2") == "me"
