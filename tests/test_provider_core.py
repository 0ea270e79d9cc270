"""One provider core behind both transports: the in-process `ScoringService` and the HTTP
`ScoreServer` (driven here through FastAPI's TestClient) answer the same requests with the
same scores, the same charges and the same errors (same class and message), including
payloads not finite in the compute dtype, a limit, budget exhaustion and a malformed body.
Both satisfy `contract.ScoringAPI`; their budgets (memory, SQLite) one `Budget` interface."""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cbp_jax.contract import (
    HTTP_STATUS,
    BudgetExhaustedError,
    MalformedRequestError,
    ScoreRequest,
    ScoringAPI,
)
from cbp_jax.serve.app import create_app
from cbp_jax.serve.launch import make_server
from cbp_jax.serve.ledger import Ledger, UserSpec
from cbp_jax.serve.limits import ServeLimits
from cbp_jax.serve.wire import decode_response, encode_request
from cbp_jax.service import ScoringService
from cbp_jax.service.budget import ApiBudget, Budget
from cbp_jax.service.oracle import CBPGenerator, DeepPrompt, NoPrompt, SoftPrompt
from tests.serve_tiny import tiny_generator, tiny_model

BUDGET, KEY = 20, "alice-key-0001"
CANDS = np.array([[3, 5], [4, 6]], np.int32)
STATUS_ERROR = {status: error for error, status in HTTP_STATUS.items()}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    model = tiny_model(0)
    art = tiny_generator(model, 0)
    adapters = (NoPrompt(), SoftPrompt(), DeepPrompt(), CBPGenerator(16))
    local = ScoringService(
        model, adapters, art.adapter_params(), budget=BUDGET, model_name="tiny",
        limits=ServeLimits(),
    )  # fmt: skip
    args = types.SimpleNamespace(
        db=str(tmp_path_factory.mktemp("core") / "l.sqlite"), max_body_bytes=8 << 20,
        batch_window_ms=0.0, max_pack=1, max_rows=64,
    )  # fmt: skip
    server = make_server(model, art, [UserSpec("alice", KEY, BUDGET)], args, "tiny")
    with TestClient(create_app(server)) as client:
        yield local, server, client
    server.batcher.close()


def _request(seed, kind, p, b=3, payload=None):
    r = np.random.default_rng(seed)
    tokens, mask = np.zeros((b, 12), np.int32), np.zeros((b, 12), np.int32)
    for i, n in enumerate(r.integers(2, 13, b)):
        tokens[i, 12 - n :], mask[i, 12 - n :] = r.integers(1, 101, n), 1
    if payload is None:
        shape = {"task_vector": (p, 16), "prompt": (p, 2, 48), "deep_prompt": (3, p, 2, 48)}
        payload = None if kind == "none" else 0.1 * r.normal(size=shape[kind])
    payload = None if payload is None else np.asarray(payload)
    return ScoreRequest(kind, payload, tokens, mask, CANDS)


def _http(client, body: bytes):
    """(scores, calls charged) or (error class, message), as a client would read them."""
    h = {"X-API-Key": KEY, "Content-Type": "application/msgpack"}
    answer = client.post("/v1/score", content=body, headers=h)
    if answer.status_code != 200:
        return STATUS_ERROR[answer.status_code], answer.json()["error"]
    out = decode_response(answer.content)
    assert int(answer.headers["X-Charged"]) == out["calls"]
    return out["logprobs"], out["calls"]


def _local(service, req):
    try:
        resp = service.score(req)
    except (MalformedRequestError, BudgetExhaustedError) as e:
        return type(e), str(e)
    return resp.logprobs_PxBxCxW, resp.calls


def test_both_transports_share_the_contract_and_the_budget_interface(pair):
    local, server, _ = pair
    assert isinstance(local, ScoringAPI)
    assert all(isinstance(b, Budget) for b in (ApiBudget(3), server.ledger))
    assert isinstance(server.ledger, Ledger)


def test_public_info_is_the_same(pair):
    local, server, client = pair
    info = client.get("/v1/info", headers={"X-API-Key": KEY}).json()
    mine = local.public_info()
    assert info["accepted_kinds"] == list(mine.accepted_kinds)
    assert info["hidden_std"] == pytest.approx(list(mine.hidden_std))
    for name in ("model_name", "hidden_size", "num_layers", "vocab_size", "embedding_std"):
        assert info[name] == getattr(mine, name), name


STEPS = [  # (name, request); budget 20
    ("task vector P=3", _request(1, "task_vector", 3)),
    ("prompt P=2", _request(2, "prompt", 2)),
    ("no prompt", _request(3, "none", 1)),
    ("deep prompt P=2", _request(4, "deep_prompt", 2)),
    ("unknown kind", dataclasses.replace(_request(5, "none", 1), kind="gradient")),
    ("payload of the wrong shape", _request(6, "prompt", 2, payload=np.zeros((2, 2, 47)))),
    ("NaN payload", _request(7, "task_vector", 2, payload=np.full((2, 16), np.nan))),
    ("float64 1e300: inf in the compute dtype", _request(8, "task_vector", 2,
                                                         payload=np.full((2, 16), 1e300))),
    ("float32 3e38: scores not finite", _request(9, "task_vector", 2,
                                                 payload=np.full((2, 16), 3e38, np.float32))),
    ("a token id beyond the vocabulary", ScoreRequest(
        "none", None, np.full((1, 4), 101, np.int32), np.ones((1, 4), np.int32), CANDS)),
    ("population over the limit", _request(10, "task_vector", 257)),
    ("no-prompt request with a payload", _request(11, "none", 1, payload=np.zeros((1, 16)))),
    ("the last 12 calls", _request(12, "task_vector", 12)),
    ("exhausted", _request(13, "none", 1)),
]  # fmt: skip


def test_same_scores_charges_and_errors(pair):
    local, server, client = pair
    for name, req in STEPS:
        got_l = _local(local, req)
        got_r = _http(client, encode_request(req))
        assert local.calls_used == server.ledger.budget("alice")["used"], name
        if isinstance(got_l[0], type):
            assert got_l == got_r, name  # same error class and message
            continue
        np.testing.assert_allclose(got_r[0], got_l[0], atol=1e-5, err_msg=name)
        assert got_l[1] == got_r[1] == req.calls, name
    assert local.calls_used == BUDGET and local.calls_remaining == 0
    assert server.ledger.budget("alice")["remaining"] == 0


def test_a_malformed_body_is_refused_by_http_and_costs_nothing(pair):
    _, server, client = pair
    used = server.ledger.budget("alice")["used"]
    for body in (b"\x93not msgpack", encode_request(_request(1, "none", 1))[:-3]):
        error, message = _http(client, body)
        assert error is MalformedRequestError, message
    assert server.ledger.budget("alice")["used"] == used
