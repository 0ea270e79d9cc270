"""The provider as a real HTTP service: a tiny model served on loopback in a subprocess.

Checks: CBP customization over HTTP equals the in-process run; keys, per-user budgets,
idempotent request ids; a server killed mid-run (after charging, before answering)
resumes from the run's checkpoint with no double charge; every malformed request class is
refused with a 4xx while the server keeps serving; packing requests changes no score.
"""

import contextlib
import pathlib
import socket
import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import requests

from cbp_jax.data.batching import make_inputs
from cbp_jax.methods.blackbox import BlackBoxConfig
from cbp_jax.methods.cbp import customize, task_vector_accuracy
from cbp_jax.serve.batcher import BatchConfig, Batcher, Job, bucket
from cbp_jax.serve.client import RemoteService, RetryPolicy
from cbp_jax.serve.ledger import UserSpec
from cbp_jax.serve.limits import ServeLimits
from cbp_jax.serve.wire import encode_request
from cbp_jax.service import ScoreRequest
from cbp_jax.service.oracle import CBPGenerator, NoPrompt, SoftPrompt
from cbp_jax.service.provider import cbp_service
from tests.serve_tiny import tiny_generator, tiny_model
from tests.test_cbp import TOY, WordTokenizer, _examples

KEYS = {"alice": "alice-key-0001", "bob": "bob-key-00002", "carol": "carol-key-0003"}
BUDGETS = {"alice": 5000, "bob": 5000, "carol": 200}
# eval_init off: the kill test counts requests (request 7 = chunk 3's first train request).
BB = BlackBoxConfig(population=4, budget=300, chunk=2, sigma0=0.5, buckets=1, eval_init=False)
# A dead server fails fast (connection refused, retried for 2 s); a live one may take long
# to answer on a loaded machine (compilation): the per-attempt timeout is generous.
FAST_FAIL = RetryPolicy(timeout_s=600, deadline_s=2, backoff_s=0.1, backoff_max_s=0.5)
PATIENT = 600  # seconds: deadlines of waits that must hold on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m tests.serve_tiny` (the tiny test model) on 127.0.0.1 in a subprocess."""

    def __init__(self, db: pathlib.Path, port: int | None = None):
        self.db, self.port = db, port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, *extra: str) -> "Server":
        keys = [f"--key={n}:{k}:{BUDGETS[n]}" for n, k in KEYS.items()]
        cmd = [sys.executable, "-m", "tests.serve_tiny"]
        cmd += ["--db", str(self.db), "--port", str(self.port), *keys, *extra]
        self.log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300  # start-up deadline, not a timing assertion
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.db.with_suffix('.log').read_text()}")
            with contextlib.suppress(requests.RequestException):  # not up yet, or busy
                if requests.get(self.url + "/v1/health", timeout=PATIENT).ok:
                    return self
            time.sleep(0.2)
        raise RuntimeError("server did not come up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=PATIENT)
        self.log.close()

    def used(self, user: str) -> int:
        r = requests.get(
            self.url + "/v1/budget", headers={"X-API-Key": KEYS[user]}, timeout=PATIENT
        )
        return r.json()["used"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve") / "ledger.sqlite").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def task():
    tok = WordTokenizer()
    train_ex, dev_ex = _examples(10, 8), _examples(11, 8)
    return tok, make_inputs(tok, TOY, train_ex), make_inputs(tok, TOY, dev_ex), dev_ex


@pytest.fixture(scope="module")
def tiny():
    model = tiny_model(0)
    return model, tiny_generator(model, 0)


@pytest.fixture(scope="module")
def in_process(tiny, task):
    model, art = tiny
    _, train, dev, _ = task
    return customize(cbp_service(model, art), art.release(), train, dev, BB, progress=False)


def _customize(service, tiny, task, run_dir=None):
    _, train, dev, _ = task
    release = tiny[1].release()
    return customize(service, release, train, dev, BB, run_dir=run_dir, progress=False)


def test_customization_over_http_equals_in_process(server, tiny, task, in_process):
    tok, _, _, dev_ex = task
    remote = RemoteService(server.url, KEYS["alice"], run_id="same-seed", tokenizer=tok)
    before = server.used("alice")
    result = _customize(remote, tiny, task)
    assert result.generations == in_process.generations >= 6
    np.testing.assert_allclose(result.best_z, in_process.best_z, atol=1e-4)
    assert [h["generation"] for h in result.history] == [
        h["generation"] for h in in_process.history
    ]
    assert result.calls_used == in_process.calls_used == remote.calls_used
    assert server.used("alice") - before == in_process.calls_used
    local = cbp_service(*tiny)
    acc_remote = task_vector_accuracy(remote, tok, TOY, dev_ex, result.best_z, 16)
    assert acc_remote == task_vector_accuracy(local, tok, TOY, dev_ex, in_process.best_z, 16)


def _good(p=1, b=2, seed=0):
    r = np.random.default_rng(seed)
    tokens = r.integers(1, 101, (b, 8)).astype(np.int32)
    z = r.normal(size=(p, 16)).astype(np.float32)
    return ScoreRequest("task_vector", z, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def _post(server, body, key="carol", rid=None, **headers):
    h = {"Content-Type": "application/msgpack", **headers}
    if key is not None:
        h["X-API-Key"] = KEYS.get(key, key)
    if rid is not None:
        h["X-Request-Id"] = rid
    return requests.post(server.url + "/v1/score", data=body, headers=h, timeout=PATIENT)


def test_unknown_key_is_refused_and_costs_nothing(server):
    used = {u: server.used(u) for u in KEYS}
    body = encode_request(_good())
    for key in (None, "not-a-key-at-all", KEYS["alice"] + "x"):
        assert _post(server, body, key=key).status_code == 401
        h = {} if key is None else {"X-API-Key": key}
        assert (
            requests.get(server.url + "/v1/budget", headers=h, timeout=PATIENT).status_code == 401
        )
        assert requests.get(server.url + "/v1/info", headers=h, timeout=PATIENT).status_code == 401
    assert {u: server.used(u) for u in KEYS} == used


def test_retried_request_id_is_charged_once_and_users_are_isolated(server):
    body = encode_request(_good(p=4, b=2, seed=1))
    bob, alice = server.used("bob"), server.used("alice")
    first = _post(server, body, key="bob", rid="retry-1")
    again = _post(server, body, key="bob", rid="retry-1")
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    # one call = one candidate on one batch: P = 4 calls, whatever B
    assert (first.headers["X-Charged"], again.headers["X-Charged"]) == ("4", "0")
    assert again.headers["X-Replayed"] == "1"
    assert server.used("bob") == bob + 4 and server.used("alice") == alice
    # the same id from another user is that user's own request: charged to them only
    other = _post(server, body, key="alice", rid="retry-1")
    assert other.headers["X-Charged"] == "4" and other.content == first.content
    assert server.used("bob") == bob + 4 and server.used("alice") == alice + 4
    conflict = _post(server, encode_request(_good(p=4, b=2, seed=2)), key="bob", rid="retry-1")
    assert conflict.status_code == 409 and server.used("bob") == bob + 4


def _mutated(change):
    body = msgpack.unpackb(encode_request(_good()), raw=False)
    change(body)
    return msgpack.packb(body, use_bin_type=True)


def _array(a):
    a = np.asarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _with(**fields):
    def change(body):
        body.update(
            {k: v if v is None or isinstance(v, str) else _array(v) for k, v in fields.items()}
        )

    return _mutated(change)


BAD = {
    "not msgpack": (b"\x00\xffgarbage", {}, 400),
    "not a map": (msgpack.packb([1, 2, 3]), {}, 400),
    "missing field": (_mutated(lambda b: b.pop("mask")), {}, 400),
    "unknown field": (_mutated(lambda b: b.update(labels=1)), {}, 400),
    "unknown kind": (_with(kind="logits"), {}, 400),
    "complex dtype": (_with(payload=np.zeros((1, 16), np.complex64)), {}, 400),
    "bytes vs shape": (_mutated(lambda b: b["tokens"].update(shape=[3, 8])), {}, 400),
    "NaN payload": (_with(payload=np.full((1, 16), np.nan, np.float32)), {}, 400),
    "inf payload": (_with(payload=np.full((1, 16), np.inf, np.float32)), {}, 400),
    "token id >= vocab": (_with(tokens=np.full((2, 8), 101, np.int32)), {}, 400),
    "negative token id": (_with(tokens=np.full((2, 8), -1, np.int32)), {}, 400),
    "candidate out of range": (_with(candidates=np.array([[3], [500]], np.int32)), {}, 400),
    "float token ids": (_with(tokens=np.ones((2, 8), np.float32)), {}, 400),
    "mask not 0/1": (_with(mask=np.full((2, 8), 2, np.int32)), {}, 400),
    "wrong task dims": (_with(payload=np.zeros((1, 15), np.float32)), {}, 400),
    "population over limit": (_with(payload=np.zeros((257, 16), np.float32)), {}, 400),
    "batch over limit": (
        _with(tokens=np.ones((257, 8), np.int32), mask=np.ones((257, 8), np.int32)),
        {},
        400,
    ),
    "sequence over limit": (
        _with(tokens=np.ones((1, 513), np.int32), mask=np.ones((1, 513), np.int32)),
        {},
        400,
    ),
    "prompt over limit": (_with(kind="prompt", payload=np.zeros((1, 65, 48), np.float32)), {}, 400),
    "body too large": (b"\x00" * (9 << 20), {}, 413),
    "bad request id": (encode_request(_good()), {"X-Request-Id": "../../etc"}, 400),
    "over budget": (encode_request(_good(p=256, b=8)), {}, 402),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_request_is_refused_and_next_good_one_served(server, name):
    body, headers, status = BAD[name]
    used = server.used("carol")
    bad = _post(server, body, **headers)
    assert bad.status_code == status, bad.text
    assert bad.json()["error"]
    assert server.used("carol") == used
    good = _post(server, encode_request(_good(seed=len(name))))
    assert good.status_code == 200 and good.headers["X-Charged"] == "1"
    assert server.used("carol") == used + 1
    assert {"logprobs", "calls"} <= set(msgpack.unpackb(good.content, raw=False))


def test_killed_server_run_resumes_and_charges_each_call_once(tmp_path, tiny, task, in_process):
    tok = task[0]
    srv = Server(tmp_path / "ledger.sqlite").start("--exit-after-commits", "7")
    try:
        client = RemoteService(srv.url, KEYS["alice"], run_id="killed", retry=FAST_FAIL)
        with pytest.raises(Exception, match="no answer within"):
            _customize(client, tiny, task, tmp_path / "run")
        assert srv.proc.wait(timeout=PATIENT) == 17  # died after charging request 7, unanswered
        charged_before = client.calls_used  # the six answered requests
        srv.stop()
        srv.start()  # same database, same port
        assert srv.used("alice") > charged_before  # request 7 was charged and recorded
        resumed_client = RemoteService(srv.url, KEYS["alice"], run_id="killed", tokenizer=tok)
        resumed = _customize(resumed_client, tiny, task, tmp_path / "run")
        used_after = srv.used("alice")
    finally:
        srv.stop()
    np.testing.assert_allclose(resumed.best_z, in_process.best_z, atol=1e-4)
    assert resumed.generations == in_process.generations
    assert resumed.calls_used == used_after == in_process.calls_used
    per_chunk = BB.chunk * BB.population + 1  # P calls per generation, 1 for the dev check
    assert charged_before == 2 * per_chunk  # chunks 1-2 answered, chunk 3 lost mid-way
    # request 7 (chunk 3's first) was charged once before the crash; after the resume the
    # engine re-sent it with the same id and it came from the record, free
    assert used_after - charged_before - resumed_client.calls_used == BB.population


def test_packing_concurrent_requests_changes_no_score(tiny):
    model, art = tiny
    adapters = {a.kind: a for a in (NoPrompt(), SoftPrompt(), CBPGenerator(16))}
    batcher = Batcher(model, adapters, art.adapter_params(), BatchConfig())
    local = cbp_service(model, art)
    reqs = [_good(p=3, b=4, seed=1), _good(p=1, b=3, seed=2), _good(p=2, b=4, seed=3)]
    reqs[1] = ScoreRequest("task_vector", reqs[1].payload, reqs[1].tokens_BxS[:, 2:],
                           reqs[1].mask_BxS[:, 2:], reqs[1].candidates_CxW)  # fmt: skip
    jobs = [Job(r.kind, r.payload, r.tokens_BxS, r.mask_BxS, r.candidates_CxW) for r in reqs]
    assert len({j.key() for j in jobs}) == 1  # one tile: their rows share chunks
    batcher.run_now(jobs)
    for req, job in zip(reqs, jobs, strict=True):
        want = local.score(req).logprobs_PxBxCxW
        np.testing.assert_allclose(job.future.result(), want, atol=1e-5)
    assert batcher.packs == 1
    batcher.close()
    assert [bucket(n, 8) for n in (1, 8, 9, 100)] == [8, 8, 16, 128]


def test_configs_are_validated():
    for bad in (dict(window_ms=-1), dict(max_requests=0), dict(max_rows=0)):
        with pytest.raises(ValueError):
            BatchConfig(**bad)
    with pytest.raises(ValueError):
        ServeLimits(max_batch=0)
    with pytest.raises(ValueError):
        RetryPolicy(deadline_s=0)
    for text in ("alice:key", "alice:short:10", "alice:longenough:-1", ":longenough:1"):
        with pytest.raises(ValueError):
            UserSpec.parse(text)
    assert UserSpec.parse("alice:longenough:10") == UserSpec("alice", "longenough", 10)
