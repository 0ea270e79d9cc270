"""Sweeps on a tiny random model: vmap = separate runs, budget, chunked scoring, memory, 2 hosts."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.bbt import bbt_parameterization
from cbp_jax.methods.chunked_scoring import evaluate_vectors, population_scores
from cbp_jax.methods.sweep import SweepConfig, Sweeper, make_hparams, sweep_shapes
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.service import BudgetExhaustedError, ScoringService
from cbp_jax.service.memory import candidate_bytes, chunk_for_memory
from cbp_jax.service.oracle import SoftPrompt

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
PROJ = ProjectionConfig(num_dims=16, prompt_len=4, sigma=1.0)
KINDS = (SoftPrompt(),)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _data(seed, n=8, s=8):
    r = np.random.default_rng(seed)
    tokens = r.integers(0, CFG.vocab_size, (n, s))
    return Inputs(tokens, np.ones_like(tokens), np.array([[5], [9]]), r.integers(0, 2, n))


def _model():
    return LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")


@pytest.fixture(scope="module")
def model():
    return _model()


def _param(service, d=PROJ.num_dims):
    proj = ProjectionConfig(num_dims=d, prompt_len=PROJ.prompt_len, sigma=1.0)
    return bbt_parameterization(jax.random.key(1), service.public_info(), proj)


def test_vmapped_sweep_equals_each_run_alone(model):
    service = ScoringService(model, KINDS)
    cfg = SweepConfig(strategy="sep_cma", population=8, generations=6)
    sweeper = Sweeper(service, _param(service), _data(0), cfg)
    keys = jax.random.split(jax.random.key(7), 3)
    hp = make_hparams(3, sigma0=[0.5, 1.0, 2.0], loss=["ce", "hinge", "ce"], c_mean=[1, 1, 0.5])
    sweep = sweeper.run(keys, hp)
    assert sweep.final_mean_SxR.shape == (3, 16) and sweep.curves["loss_mean"].shape == (3, 6)
    for i in range(3):
        alone = sweeper.run_one(keys[i], jax.tree.map(lambda x, i=i: x[i], hp))
        np.testing.assert_allclose(alone.final_mean_SxR[0], sweep.final_mean_SxR[i], atol=1e-4)
        np.testing.assert_allclose(alone.best_loss_S[0], sweep.best_loss_S[i], atol=1e-5)
        for name, curve in sweep.curves.items():
            np.testing.assert_allclose(alone.curves[name][0], curve[i], rtol=1e-4, atol=1e-5)
    # the runs really differ (seeds and hyperparameters reach the run)
    assert np.abs(sweep.final_mean_SxR[0] - sweep.final_mean_SxR[2]).max() > 1e-2
    assert sweep.curves["loss_mean"][0, -1] < sweep.curves["loss_mean"][0, 0]


def test_sweep_charges_budget_up_front_and_refuses_whole(model):
    per_run = 4 * 8  # generations x P (one call per candidate on the whole train batch)
    service = ScoringService(model, KINDS, budget=3 * per_run + 10)
    cfg = SweepConfig(population=8, generations=4)
    sweeper = Sweeper(service, _param(service), _data(0), cfg)
    keys = jax.random.split(jax.random.key(0), 3)
    res = sweeper.run(keys, make_hparams(3))
    assert res.calls == service.calls_used == 3 * per_run
    with pytest.raises(BudgetExhaustedError):
        sweeper.run(keys[:1], make_hparams(1))
    assert service.calls_used == 3 * per_run
    with pytest.raises(BudgetExhaustedError):  # the shape sweep checks its total first
        sweep_shapes(
            service,
            lambda d: _param(service, d),
            _data(0),
            cfg,
            [(4, 8)],
            keys[:1],
            make_hparams(1),
            budget_per_run=12,  # 3 generations x 4 = 12 calls, 10 left
        )
    assert service.calls_used == 3 * per_run


def test_chunked_scoring_equals_unchunked(model):
    z_PxR = jax.random.normal(jax.random.key(3), (10, 16))  # 10 = not a multiple of 3 or 4
    buckets, _ = _data(0).buckets(2)

    def scores(service_chunk, user_chunk):
        service = ScoringService(model, KINDS, population_chunk=service_chunk)
        param = _param(service)
        fn = jax.jit(
            lambda o, pp, z, b: population_scores(o, param, pp, z, b, "logsumexp", user_chunk)
        )
        return np.asarray(fn(service.oracle("prompt"), param.payload_params, z_PxR, buckets))

    ref = scores(None, None)
    assert ref.shape == (10, 8, 2)
    # (service's chunk of the model forward, user-side chunk of payload + scoring); P = 10 is
    # not a multiple of 3 or 4, so those take lax.map's remainder path; 5 the strided one.
    for service_chunk, user_chunk in (
        (1, None),
        (3, None),
        (4, None),
        ("auto", None),
        (None, 1),
        (None, 3),
        (None, 5),
        (4, 3),
    ):
        got = scores(service_chunk, user_chunk)
        # not bitwise: XLA's CPU GEMMs round differently at other batch sizes (~2e-6 here)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=str(service_chunk))


def test_chunked_sweep_equals_unchunked(model):
    service = ScoringService(model, KINDS)
    keys = jax.random.split(jax.random.key(5), 2)

    def final_means(chunk):
        cfg = SweepConfig(population=9, generations=4, population_chunk=chunk)
        sweeper = Sweeper(service, _param(service), _data(0), cfg)
        return sweeper.run(keys, make_hparams(2)).final_mean_SxR

    whole, strided = final_means(None), final_means(3)  # 9 = 3 x 3: strided chunks
    np.testing.assert_allclose(strided, whole, atol=1e-4)
    assert np.abs(whole[0] - whole[1]).max() > 1e-2


def test_memory_budget_holds(model):
    batch, seq, p = 8, 8, 64
    per = candidate_bytes(CFG, batch, seq, PROJ.prompt_len)
    budget = 4 * per
    chunk = chunk_for_memory(budget, CFG, batch, seq, PROJ.prompt_len)
    assert chunk == 4
    with pytest.raises(ValueError):
        chunk_for_memory(per - 1, CFG, batch, seq, PROJ.prompt_len)
    z_PxR = jax.random.normal(jax.random.key(3), (p, 16))
    buckets, _ = _data(0, batch, seq).buckets(1)

    def temp_bytes(c):
        service = ScoringService(model, KINDS, population_chunk=c)
        param = _param(service)
        fn = jax.jit(lambda o, pp, z, b: population_scores(o, param, pp, z, b, "logsumexp", c))
        compiled = fn.lower(service.oracle("prompt"), param.payload_params, z_PxR, buckets)
        return compiled.compile().memory_analysis().temp_size_in_bytes

    chunked, whole = temp_bytes(chunk), temp_bytes(None)
    assert chunked <= budget < whole, (chunked, budget, whole)


def test_large_population_sweep_runs_in_chunks(model):
    service = ScoringService(model, KINDS, population_chunk=500)
    data = _data(0, n=2)
    cfg = SweepConfig(strategy="sep_cma", population=10_000, generations=2, population_chunk=500)
    res = Sweeper(service, _param(service), data, cfg).run(
        jax.random.split(jax.random.key(0), 1), make_hparams(1, sigma0=0.5)
    )
    assert service.calls_used == res.calls == 2 * 10_000  # generations x P
    assert np.isfinite(res.final_mean_SxR).all() and np.isfinite(res.curves["loss_min"]).all()
    assert res.curves["loss_min"][0, 0] < res.curves["loss_mean"][0, 0]
    loss, acc = evaluate_vectors(service, _param(service), res.best_z_SxR, data)
    np.testing.assert_allclose(loss, res.best_loss_S, atol=1e-4)  # best z rescored: same loss
    assert service.calls_used == res.calls + 1  # one vector on one batch


TWO_PROCESS = textwrap.dedent(
    """
    import json, sys
    from cbp_jax import distributed
    distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
    import jax
    assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
    from tests.test_sweep import KINDS, _data, _model, _param, SweepConfig, Sweeper, make_hparams
    from cbp_jax.service import ScoringService
    service = ScoringService(_model(), KINDS)
    mesh = distributed.global_population_mesh()
    cfg = SweepConfig(population=8, generations=4, population_chunk=4)
    res = Sweeper(service, _param(service), _data(0), cfg, mesh=mesh).run(
        jax.random.split(jax.random.key(2), 2), make_hparams(2, sigma0=[0.5, 1.0]))
    print("RESULT " + json.dumps({"mean": res.final_mean_SxR.tolist(),
                                  "loss": res.curves["loss_mean"].tolist()}), flush=True)
    distributed.shutdown()
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_run_equals_single_process(model):
    service = ScoringService(model, KINDS)
    cfg = SweepConfig(population=8, generations=4, population_chunk=4)
    single = Sweeper(service, _param(service), _data(0), cfg).run(
        jax.random.split(jax.random.key(2), 2), make_hparams(2, sigma0=[0.5, 1.0])
    )
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2"
    )
    address = f"127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_PROCESS, address, str(i)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for i, (out, err) in enumerate(outs):
        lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
        assert procs[i].returncode == 0 and lines, err[-3000:]
        got = json.loads(lines[0][len("RESULT ") :])
        np.testing.assert_allclose(got["mean"], single.final_mean_SxR, atol=1e-4)
        np.testing.assert_allclose(got["loss"], single.curves["loss_mean"], atol=1e-4)
