"""Abandonable work and revocation without restart (issue 43, defects 2 and 8), each
failing before its fix:

2. A request past its deadline, or whose client went away, stops computing between chunks,
   is not charged, and the worker takes the next request after at most one more chunk.
8. `Ledger.revoke` (what `cbp-jax serve keys revoke NAME` runs) takes effect in the running
   server: the key is refused and the user's queued request is dropped uncharged.
   Graceful shutdown: what was answered before it is charged once; requests still in flight
   when the grace period ends (one computing, one queued) are cancelled, stop uncharged
   with no hold left, and after a restart on the same ledger a retry of each id computes
   or replays it, so every request is charged exactly once.

The worker is held at a chunk by a gate (a readiness signal), never by sleeping.
"""

import concurrent.futures
import socket
import threading

import numpy as np
import pytest

from cbp_jax.serve.batcher import chunks_of
from cbp_jax.serve.limits import GuardConfig
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from tests.serve_live import KEYS, LiveServer
from tests.test_serve_paid import _until


class ChunkGate:
    """Holds the worker before its first chunk until `open()`; records the chunks run."""

    def __init__(self, batcher):
        self.batcher, self.entered, self._go = batcher, threading.Event(), threading.Event()
        self._inner, batcher._run_chunk = batcher._run_chunk, self._run
        self.jobs = []

    def _run(self, kind, args):
        self.entered.set()
        assert self._go.wait(timeout=600), "the test never opened the gate"
        return self._inner(kind, args)

    def open(self):
        self._go.set()


def _request(p, b, s, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, s)).astype(np.int32)
    payload = r.normal(size=(p, 16)).astype(np.float32)
    return ScoreRequest("task_vector", payload, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def _long(seed=0):
    """A request of 16 chunks: one candidate on 16 x 128 tokens is two chunks."""
    assert chunks_of(8, 16, 128) == 16
    return _request(8, 16, 128, seed)


def _small(seed=1):
    return _request(1, 1, 8, seed)


def test_a_request_past_its_deadline_stops_between_chunks_uncharged(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100}, guard=GuardConfig(request_timeout_s=1))
    gate = ChunkGate(srv.server.batcher)
    try:
        late = srv.post(encode_request(_long()))  # held at chunk 1 of 16 past its deadline
        assert late.status_code == 503 and "Retry-After" in late.headers, late.text
        srv.server.guard = GuardConfig()  # the next request's deadline: generous
        gate.open()  # chunk 1 runs; then the worker sees nobody waits and stops
        assert srv.post(encode_request(_small())).status_code == 200  # the worker is free
        assert srv.server.batcher.chunks == 2  # chunk 1 of 16, then the small request's one
        assert srv.used("alice") == 1
    finally:
        gate.open()
        srv.stop()


def test_a_request_whose_client_went_away_stops_uncharged(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100})
    gate = ChunkGate(srv.server.batcher)
    try:
        body = encode_request(_long())
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEYS['alice']}\r\n"
            f"Content-Type: application/msgpack\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", srv.port), timeout=600) as s:
            s.sendall(head.encode() + body)
            assert gate.entered.wait(timeout=600)  # computing chunk 1 of 16
        # the server notices the closed connection while it waits, and gives the request up
        _until(lambda: srv.server.shedder.total == 0, "the server sees the client gone")
        gate.open()
        assert srv.post(encode_request(_small())).status_code == 200  # the worker is free
        assert srv.server.batcher.chunks == 2  # chunk 1 of 16, then the small request's one
        assert srv.used("alice") == 1
    finally:
        gate.open()
        srv.stop()


def test_revocation_takes_effect_without_restart_even_for_queued_work(tmp_path):
    srv = LiveServer(tmp_path / "l.sqlite", {"alice": 100, "bob": 100})
    gate = ChunkGate(srv.server.batcher)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(srv.post, encode_request(_small(seed=5)), timeout=600)
            assert gate.entered.wait(timeout=600)  # alice's request computes (held)
            queued = pool.submit(srv.post, encode_request(_small(seed=6)), user="bob", timeout=600)
            _until(lambda: queued.done() or len(srv.server.batcher._queue) > 0, "bob queued")
            assert srv.server.ledger.revoke("bob")
            gate.open()
            assert first.result().status_code == 200
            dropped = queued.result()
        assert dropped.status_code == 401, dropped.text
        assert srv.used("bob") == 0
        assert srv.post(encode_request(_small()), user="bob").status_code == 401
        assert not srv.server.ledger.revoke("bob")  # already revoked
    finally:
        gate.open()
        srv.stop()


def test_the_revoke_verb_revokes_in_the_ledger_file(tmp_path):
    from cbp_jax.cli import main
    from cbp_jax.serve.ledger import Ledger
    from tests.serve_live import users

    db = str(tmp_path / "l.sqlite")
    Ledger(db).sync_users(users(alice=10, bob=10))
    main(["serve", "keys", "revoke", "bob", "--db", db])
    ledger = Ledger(db)
    assert ledger.authenticate(KEYS["bob"]) is None and ledger.active("alice")
    with pytest.raises(SystemExit, match="no active user 'bob'"):
        main(["serve", "keys", "revoke", "bob", "--db", db])


def test_shutdown_abandons_in_flight_work_uncharged_and_nothing_is_charged_twice(tmp_path):
    db, budgets = tmp_path / "l.sqlite", {"alice": 100, "bob": 100}
    srv, gate = LiveServer(db, budgets, graceful_s=1), None  # grace period (serve(): 5 s)
    try:
        answered = srv.post(encode_request(_small(seed=2)), rid="a-1")
        assert answered.status_code == 200 and srv.used("alice") == 1
        gate = ChunkGate(srv.server.batcher)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            long = pool.submit(srv.post, encode_request(_long()), rid="a-2")
            assert gate.entered.wait(timeout=600)  # alice's long request: chunk 1 of 16 held
            queued = pool.submit(srv.post, encode_request(_small(seed=3)), user="bob", rid="b-1")
            _until(lambda: len(srv.server.batcher._queue) == 1, "bob's request queued")
            srv._uvicorn.should_exit = True  # shutdown: after the grace period, tasks cancelled
            _until(lambda: srv.server.shedder.total == 0, "in-flight requests given up")
            gate.open()  # chunk 1 ends; the worker then sees nobody waits for either request
            outcomes = [f.exception() or f.result().status_code for f in (long, queued)]
        _until(lambda: srv.server.batcher._queue.empty(), "the worker dropped both")
        assert all(o != 200 for o in outcomes), outcomes
        assert srv.server.batcher.chunks == 2  # a-1's chunk, then a-2's first of 16: no more
        assert (srv.used("alice"), srv.used("bob")) == (1, 0)
        assert srv.server.ledger._held == {"alice": 0, "bob": 0}  # holds given back
    finally:
        if gate is not None:
            gate.open()
        srv.stop()
    again = LiveServer(db, budgets)  # restarted on the same ledger; clients retry their ids
    try:
        for body, user, rid, charged in (
            (_small(seed=2), "alice", "a-1", "0"),  # answered before: its record, free
            (_long(), "alice", "a-2", "8"),  # abandoned: computed now, charged once
            (_long(), "alice", "a-2", "0"),  # and its retry replayed
            (_small(seed=3), "bob", "b-1", "1"),
        ):
            answer = again.post(encode_request(body), user=user, rid=rid)
            assert answer.status_code == 200 and answer.headers["X-Charged"] == charged, rid
        assert (again.used("alice"), again.used("bob")) == (9, 1)
    finally:
        again.stop()
