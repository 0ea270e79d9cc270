"""The service boundary: what crosses, API-call accounting, budget, malformed requests."""

import dataclasses

import jax
import numpy as np
import pytest

from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.service import (
    BudgetExhaustedError,
    MalformedRequestError,
    ScoreRequest,
    ScoreResponse,
    ScoringService,
)
from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt

CFG = LlamaConfig(101, 48, 80, 2, 6, 2, 8)
KINDS = (NoPrompt(), SoftPrompt(), DeepPrompt())


@pytest.fixture(scope="module")
def model():
    return LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")


def _request(p=5, b=4, t=3, kind="prompt"):
    r = np.random.default_rng(0)
    tokens = r.integers(0, CFG.vocab_size, (b, 6))
    payload = r.normal(size=(p, t, CFG.hidden_size)).astype(np.float32)
    return ScoreRequest(kind, payload, tokens, np.ones_like(tokens), np.array([[3], [7]]))


def test_serial_and_batched_cost_the_same_and_agree(model):
    serial, batched = ScoringService(model, KINDS), ScoringService(model, KINDS)
    req = _request(p=5, b=4)
    whole = batched.score(req)
    parts = [
        serial.score(dataclasses.replace(req, payload=req.payload[i : i + 1])) for i in range(5)
    ]
    # one call per candidate on the whole batch of 4: 5 calls, 20 examples, 5 x 24 tokens
    assert batched.calls_used == serial.calls_used == 5 == whole.calls
    assert (
        (whole.examples, whole.tokens)
        == (20, 120)
        == (
            sum(p.examples for p in parts),
            sum(p.tokens for p in parts),
        )
    )
    assert (serial.examples_scored, serial.tokens_scored) == (20, 120)
    np.testing.assert_allclose(
        np.concatenate([p.logprobs_PxBxCxW for p in parts]), whole.logprobs_PxBxCxW, atol=1e-5
    )


def test_budget_exhaustion_refuses_the_whole_request(model):
    service = ScoringService(model, KINDS, budget=8)
    service.score(_request(p=5, b=4))
    with pytest.raises(BudgetExhaustedError, match="5 of 8 calls used, request needs 5"):
        service.score(_request(p=5, b=40))
    assert service.calls_used == 5
    service.score(_request(p=2, b=40))  # the number of examples costs nothing more
    assert service.calls_used == 7
    with pytest.raises(BudgetExhaustedError):
        service.reserve(2)


def test_only_scores_cross(model):
    assert {f.name for f in dataclasses.fields(ScoreRequest)} == {
        "kind",
        "payload",
        "tokens_BxS",
        "mask_BxS",
        "candidates_CxW",
    }
    assert {f.name for f in dataclasses.fields(ScoreResponse)} == {
        "logprobs_PxBxCxW",
        "calls",
        "examples",
        "tokens",
    }
    service = ScoringService(model, KINDS)
    resp = service.score(_request(p=2, b=3))
    assert resp.logprobs_PxBxCxW.shape == (2, 3, 2, 1)
    assert (resp.logprobs_PxBxCxW <= 0).all()
    info = service.public_info()
    arrays = [v for v in vars(info).values() if isinstance(v, np.ndarray | jax.Array)]
    assert arrays == [] and isinstance(info.embedding_std, float)
    assert not any(isinstance(v, dict) for v in vars(resp).values())


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(kind="gradient"), "unknown request kind"),
        (dict(payload=np.zeros((2, 3, 47), np.float32)), "payload must have shape"),
        (dict(payload=np.zeros((2, 3, 48), np.int32)), "floating point"),
        (dict(payload=np.full((2, 3, 48), np.nan, np.float32)), "NaN or inf"),
        (dict(payload=np.full((2, 3, 48), np.inf, np.float32)), "NaN or inf"),
        (dict(tokens_BxS=np.full((4, 6), 101)), r"token ids out of range \[0, 101\)"),
        (dict(tokens_BxS=np.zeros((4, 6), np.float32)), "must be integers"),
        (dict(mask_BxS=np.ones((4, 5), np.int64)), "mask shape"),
        (dict(mask_BxS=np.zeros((4, 6), np.int64)), "at least one real token"),
        (dict(candidates_CxW=np.array([[3], [500]])), "candidate ids out of range"),
        (dict(candidates_CxW=np.array([3, 5])), "C x W"),
        (dict(kind="none"), "carry no payload"),
        (dict(kind="deep_prompt"), "payload must have shape 2 x"),
    ],
)
def test_malformed_requests_raise(model, change, message):
    service = ScoringService(model, KINDS, budget=100)
    with pytest.raises(MalformedRequestError, match=message):
        service.score(dataclasses.replace(_request(), **change))
    assert service.calls_used == 0  # nothing charged for a refused request


def test_service_refuses_kinds_it_was_not_built_for(model):
    service = ScoringService(model, (NoPrompt(),))
    with pytest.raises(MalformedRequestError, match="does not accept 'prompt'"):
        service.score(_request())


def _scores(model, adapter, payload, tokens):
    req = ScoreRequest(adapter.kind, payload, tokens, np.ones_like(tokens), np.array([[3], [7]]))
    return ScoringService(model, (adapter,)).score(req).logprobs_PxBxCxW


def test_p0_none_is_the_bare_prompt_and_p0_adds_token_embeddings(model):
    """SoftPrompt(): the payload is the prompt (no p0); SoftPrompt(p0_token_ids=ids) scores
    payload + embed[ids] exactly as if the user had sent that sum."""
    from cbp_jax.model.decoder import forward_shared_prompt

    r = np.random.default_rng(1)
    tokens = r.integers(0, CFG.vocab_size, (3, 5))
    az = (0.1 * r.normal(size=(2, 4, CFG.hidden_size))).astype(np.float32)
    bare = _scores(model, SoftPrompt(), az, tokens)
    for i in range(2):
        logits = forward_shared_prompt(
            model.params, CFG, jax.numpy.asarray(tokens), None, prompt_TxD=az[i]
        )
        want = jax.nn.log_softmax(logits, -1)[:, np.array([3, 7])].reshape(3, 2, 1)
        np.testing.assert_allclose(bare[i], want, rtol=0, atol=1e-6)
    ids = (10, 11, 12, 13)
    embed = np.asarray(model.params["embed"], np.float32)[list(ids)]
    with_p0 = _scores(model, SoftPrompt(p0_token_ids=ids), az, tokens)
    np.testing.assert_allclose(with_p0, _scores(model, SoftPrompt(), az + embed, tokens), atol=1e-6)
    assert np.abs(with_p0 - bare).max() > 1e-3  # p0 is not zero
    zero = _scores(model, SoftPrompt(p0_token_ids=ids), np.zeros_like(az[:1]), tokens)
    np.testing.assert_allclose(zero[0], _scores(model, SoftPrompt(), embed[None], tokens)[0])


def test_deep_prompt_p0_starts_the_prompt_slots_from_token_embeddings(model):
    from cbp_jax.model.decoder import forward_shared_prompt

    r = np.random.default_rng(2)
    tokens = r.integers(0, CFG.vocab_size, (3, 5))
    deep = (0.1 * r.normal(size=(CFG.num_layers, 1, 4, CFG.hidden_size))).astype(np.float32)
    ids = (20, 21, 22, 23)
    got = _scores(model, DeepPrompt(p0_token_ids=ids), deep, tokens)[0]
    p0 = np.asarray(model.params["embed"], np.float32)[list(ids)]
    logits = forward_shared_prompt(
        model.params, CFG, jax.numpy.asarray(tokens), None, prompt_TxD=p0,
        deep_prompts_LxTxD=deep[:, 0],
    )  # fmt: skip
    want = jax.nn.log_softmax(logits, -1)[:, np.array([3, 7])].reshape(3, 2, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    bare = _scores(model, DeepPrompt(), deep, tokens)[0]
    assert np.abs(got - bare).max() > 1e-3


def test_p0_checks_its_length_and_ids(model):
    service = ScoringService(model, (SoftPrompt(p0_token_ids=(1, 2, 3)),))
    with pytest.raises(MalformedRequestError, match=r"payload must have shape \* x 3 x 48"):
        service.score(_request(p=2, t=4))
    with pytest.raises(ValueError, match="beyond the vocabulary"):
        ScoringService(model, (SoftPrompt(p0_token_ids=(99, 100, 101)),))
    with pytest.raises(ValueError, match="tuple of ints"):
        SoftPrompt(p0_token_ids=[1, 2])


def test_hidden_std_is_the_models_own_layer_inputs_clipped(model):
    """The published per-layer std reads the hidden states the model's forward computes
    (its final state, normed, equals forward's hidden output) and clips outliers."""
    from cbp_jax.model import forward
    from cbp_jax.model.block import rms_norm
    from cbp_jax.model.decoder import layer_inputs
    from cbp_jax.service.hidden_stats import clipped_std, public_token_ids

    ids = public_token_ids(None, CFG.vocab_size)
    inputs, final = layer_inputs(model.params, CFG, ids)
    assert inputs.shape == (CFG.num_layers, 64, CFG.hidden_size)
    out = forward(model.params, CFG, jax.numpy.asarray(ids)[None], return_hidden=True)
    normed = rms_norm(final, model.params["final_norm"], CFG.rms_norm_eps)
    np.testing.assert_allclose(normed, out.hidden_BxSxD[0], atol=1e-5)
    std = ScoringService(model, KINDS).public_info().hidden_std
    assert std[1:] == tuple(clipped_std(np.asarray(x)) for x in inputs[1:])
    x = np.random.default_rng(0).normal(size=10_000)
    assert abs(clipped_std(x) - 1.0) < 0.03
    assert clipped_std(np.append(x, 1e4)) < 1.03 < np.append(x, 1e4).std()
