"""The compiled CMA-ES engine on a tiny random model: learning, budget, resume, sharding."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.bbt import bbt_parameterization, bbtv2_plan, layer_stds, run_bbtv2
from cbp_jax.methods.blackbox import BlackBoxConfig, replaces, run_blackbox
from cbp_jax.methods.calls import budget_for_generations, plan
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.service import BudgetExhaustedError, ScoringService
from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt
from tests.helpers import KilledService

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
PROJ = ProjectionConfig(num_dims=16, prompt_len=4, sigma=1.0)
KINDS = (NoPrompt(), SoftPrompt(), DeepPrompt())


def _data(seed, n=8):
    r = np.random.default_rng(seed)
    tokens = r.integers(0, CFG.vocab_size, (n, 6))
    return Inputs(tokens, np.ones_like(tokens), np.array([[5], [9]]), r.integers(0, 2, n))


@pytest.fixture(scope="module")
def model():
    return LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")


def _run(model, budget=200, run_dir=None, service=None, **kw):
    service = service or ScoringService(model, KINDS, budget=budget)
    param = bbt_parameterization(jax.random.key(1), service.public_info(), PROJ)
    cfg = BlackBoxConfig(population=8, budget=budget, chunk=3, **kw)
    return run_blackbox(service, param, _data(0), _data(1), cfg, run_dir=run_dir, progress=False)


def test_learns_and_counts_calls_exactly(model):
    service = ScoringService(model, KINDS, budget=200)
    res = _run(model, service=service)
    # one call per candidate on the whole train batch: P = 8 per generation; one per dev
    # evaluation, after every chunk of 3 generations and of the start point
    chunks = -(-res.generations // 3)
    assert res.dev_calls == chunks + 1
    assert res.calls_used == service.calls_used == res.generations * 8 + res.dev_calls <= 200
    assert (res.generations, res.dev_calls) == plan(200, 8, 3)
    assert res.generations >= 15
    train, dev = _data(0), _data(1)  # 8 examples of 6 tokens each
    assert res.examples_scored == res.generations * 8 * 8 + res.dev_calls * 8
    assert res.tokens_scored == res.generations * 8 * 48 + res.dev_calls * 48
    last = res.history[-1]
    assert (last["calls"], last["dev_calls"]) == (res.calls_used, res.dev_calls)
    assert [h["calls"] - h["dev_calls"] for h in res.history] == [
        8 * h["generation"] for h in res.history
    ]
    assert train.mask_BxS.sum() == dev.mask_BxS.sum() == 48
    first, last = res.history[0]["loss_mean"], res.history[-1]["loss_mean"]
    assert last < 0.8 * first
    assert res.best_z.shape == (16,)


def test_start_point_is_scored_on_dev_and_kept_when_best(model):
    """A budget for one generation: the start point competes with it on dev."""
    service = ScoringService(model, KINDS, budget=1 + 8 + 1)
    res = _run(model, budget=1 + 8 + 1, service=service)
    assert res.generations == 1 and service.calls_used == 10 and res.dev_calls == 2
    off = _run(model, budget=1 + 8 + 1, eval_init=False)
    assert off.generations == 1 and off.calls_used == 9 and off.dev_calls == 1
    np.testing.assert_array_equal(off.best_z, off.final_mean)  # only candidate: gen-1 mean
    assert res.best_dev_acc >= off.best_dev_acc


def test_plan_matches_the_papers_unit():
    # BBT's serial mode: maxiter = budget // popsize; our dev evaluations are charged too
    assert plan(8000, 20, 5) == (395, 80) and plan(8000, 20, 5, eval_init=False)[0] == 396
    for gens, p, chunk in ((10, 20, 5), (11, 8, 3), (1, 2, 1)):
        b = budget_for_generations(gens, p, chunk)
        assert plan(b, p, chunk) == (gens, -(-gens // chunk) + 1) != plan(b - 1, p, chunk)


def test_dev_margin_rule():
    best = {"acc": 0.5, "loss": 1.0}  # 12 of 24 dev examples
    assert replaces(13 / 24, 2.0, best, 24, margin=0)  # one more right
    assert replaces(0.5, 0.9, best, 24, margin=0)  # as many right, lower loss
    assert not replaces(0.5, 1.1, best, 24, margin=0)
    assert not replaces(14 / 24, 0.1, best, 24, margin=2)  # two more: not more than 2
    assert replaces(15 / 24, 2.0, best, 24, margin=2)
    assert replaces(0.0, 9.0, {"acc": -1.0, "loss": float("inf")}, 24, margin=5)  # first


def test_a_large_dev_margin_keeps_the_start_point(model):
    """With more dev examples to gain than the dev set has, no ES mean can replace z0;
    the start's dev accuracy is reported, and the search itself is unchanged."""
    free = _run(model)
    guarded = _run(model, dev_margin=8)
    np.testing.assert_array_equal(guarded.best_z, np.zeros(16))
    assert guarded.best_dev_acc == guarded.start_dev_acc == free.start_dev_acc
    np.testing.assert_array_equal(guarded.final_mean, free.final_mean)
    assert free.best_dev_acc > free.start_dev_acc  # the unguarded run did move
    with pytest.raises(ValueError, match="dev_margin"):
        BlackBoxConfig(dev_margin=-1)


def test_budget_too_small_for_a_generation_raises(model):
    service = ScoringService(model, KINDS, budget=8)
    with pytest.raises(ValueError, match="cannot pay for one generation"):
        _run(model, budget=8, service=service)
    assert service.calls_used == 0


def test_resume_after_kill_equals_uninterrupted(model, tmp_path):
    whole = _run(model)
    killed = KilledService(ScoringService(model, KINDS, budget=200), die_at=4)
    with pytest.raises(KeyboardInterrupt):
        _run(model, run_dir=tmp_path, service=killed)
    resumed_service = ScoringService(model, KINDS, budget=200)
    resumed = _run(model, run_dir=tmp_path, service=resumed_service)
    np.testing.assert_array_equal(resumed.best_z, whole.best_z)
    np.testing.assert_array_equal(resumed.final_mean, whole.final_mean)
    assert resumed.history == whole.history
    assert resumed_service.calls_used == whole.calls_used
    assert (resumed.dev_calls, resumed.examples_scored, resumed.tokens_scored) == (
        whole.dev_calls,
        whole.examples_scored,
        whole.tokens_scored,
    )
    assert resumed.start_dev_acc == whole.start_dev_acc is not None
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == whole.history


def _bbtv2(model, budget, service=None, **kw):
    service = service or ScoringService(model, KINDS, budget=budget)
    cfg = BlackBoxConfig(population=8, budget=budget, chunk=3)
    return run_bbtv2(service, _data(0), _data(1), cfg, PROJ, progress=False, **kw)


def test_bbtv2_interleaves_one_es_per_layer_within_the_budget(model):
    # a round: 3 layers x 8 candidates + 1 dev evaluation = 25 calls; 110 pays for 4 rounds
    service = ScoringService(model, KINDS, budget=110)
    deep, layers = _bbtv2(model, 110, service)
    rounds, dev_evals = bbtv2_plan(110, 8, CFG.num_layers)
    assert (rounds, dev_evals) == (4, 5)
    assert deep.shape == (CFG.num_layers, PROJ.prompt_len, CFG.hidden_size)
    assert [r.layer for r in layers] == [0, 1, 2]
    assert [r.generations for r in layers] == [rounds] * 3  # the same for every layer
    assert [len(r.history) for r in layers] == [rounds] * 3
    run = layers[0]
    assert run.calls_used == service.calls_used == rounds * 3 * 8 + dev_evals <= 110
    assert run.dev_calls == dev_evals and run.examples_scored == run.calls_used * 8
    # interleaved: round r steps layer 0, then 1, then 2, before round r + 1 starts
    order = sorted((h["calls"], h["layer"], h["round"]) for r in layers for h in r.history)
    assert [(l, r) for _, l, r in order] == [(l, r) for r in range(1, 5) for l in range(3)]
    assert all(np.abs(r.best_z).max() > 0 for r in layers)  # every layer's ES moved
    assert run.best_dev_acc >= run.start_dev_acc


def test_bbtv2_tunes_only_the_listed_layers(model):
    service = ScoringService(model, KINDS, budget=60)  # 2 x 8 + 1 = 17 calls a round
    deep, layers = _bbtv2(model, 60, service, layers=(0, 2))
    assert [r.layer for r in layers] == [0, 2] and layers[0].generations == 3
    assert service.calls_used == 1 + 3 * 17
    assert np.abs(deep[1]).sum() == 0


def test_bbtv2_budget_below_one_round_raises(model):
    service = ScoringService(model, KINDS, budget=24)
    with pytest.raises(ValueError, match="cannot pay for one BBTv2 round: 3 layers x 8"):
        _bbtv2(model, 24, service)
    assert service.calls_used == 0
    with pytest.raises(ValueError, match="distinct ids"):
        _bbtv2(model, 100, layers=(0, 3))


def test_bbtv2_resume_after_kill_equals_uninterrupted(model, tmp_path):
    deep, whole = _bbtv2(model, 110)
    killed = KilledService(ScoringService(model, KINDS, budget=110), die_at=3)
    with pytest.raises(KeyboardInterrupt):  # killed before round 2
        _bbtv2(model, 110, killed, run_dir=tmp_path)
    service = ScoringService(model, KINDS, budget=110)
    deep_resumed, resumed = _bbtv2(model, 110, service, run_dir=tmp_path)
    np.testing.assert_array_equal(deep_resumed, deep)
    assert service.calls_used == whole[0].calls_used
    for a, b in zip(resumed, whole, strict=True):
        assert a.history == b.history
        np.testing.assert_array_equal(a.best_z, b.best_z)


def test_bbtv2_projections_use_the_published_hidden_std(model):
    info = ScoringService(model, KINDS).public_info()
    assert len(info.hidden_std) == CFG.num_layers
    assert info.hidden_std[0] == info.embedding_std
    np.testing.assert_allclose(layer_stds(info, (1, 2)), info.hidden_std[1:], rtol=1e-6)
    bare = dataclasses.replace(info, hidden_std=())
    with pytest.warns(UserWarning, match="falls back to the word-embedding std"):
        assert (layer_stds(bare, (1, 2)) == np.float32(info.embedding_std)).all()


def test_exhausted_service_raises(model):
    service = ScoringService(model, KINDS, budget=100)
    service.reserve(90)
    with pytest.raises(BudgetExhaustedError):
        service.reserve(20)


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    assert jax.device_count() == 4, jax.devices()
    from tests.test_blackbox import _data, KINDS, CFG, PROJ
    from cbp_jax.model import init_params
    from cbp_jax.model.registry import LoadedModel
    from cbp_jax.service import ScoringService
    from cbp_jax.methods.bbt import bbt_parameterization
    from cbp_jax.methods.blackbox import BlackBoxConfig, replaces, run_blackbox
    model = LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")
    mesh = jax.make_mesh((4,), ("pop",))
    out = {}
    for name, m in (("plain", None), ("sharded", mesh)):
        service = ScoringService(model, KINDS, budget=120)
        param = bbt_parameterization(jax.random.key(1), service.public_info(), PROJ)
        cfg = BlackBoxConfig(population=8, budget=120, chunk=3)
        r = run_blackbox(service, param, _data(0), _data(1), cfg, mesh=m, progress=False)
        out[name] = (r.final_mean, [h["loss_mean"] for h in r.history])
    np.testing.assert_allclose(out["plain"][0], out["sharded"][0], atol=1e-4)
    np.testing.assert_allclose(out["plain"][1], out["sharded"][1], atol=1e-4)
    print("SHARDED_OK")
    """
)


def test_sharded_population_equals_unsharded():
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]
