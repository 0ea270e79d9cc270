"""One generation function (`methods.chunked_scoring.generation`) drives both the chunked
runner (`run_blackbox`: scans of a few generations between dev evaluations and
checkpoints) and the vmapped sweeps (`Sweeper`: whole runs vmapped over seeds): a 2-seed
sweep takes the same steps as the two runs, generation by generation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.bbt import bbt_parameterization
from cbp_jax.methods.blackbox import BlackBoxConfig, run_blackbox
from cbp_jax.methods.sweep import SweepConfig, Sweeper, make_hparams
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import SoftPrompt

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
P, SIGMA0 = 4, 0.5


def _data(seed, n=6, s=8):
    r = np.random.default_rng(seed)
    tokens = r.integers(0, CFG.vocab_size, (n, s))
    return Inputs(tokens, np.ones_like(tokens), np.array([[5], [9]]), r.integers(0, 2, n))


def test_chunked_runner_and_vmapped_sweep_take_the_same_steps():
    model = LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")
    service = ScoringService(model, (SoftPrompt(),))
    proj = ProjectionConfig(num_dims=16, prompt_len=4, sigma=1.0)
    param = bbt_parameterization(jax.random.key(1), service.public_info(), proj)
    train, dev = _data(0), _data(1)
    # 3 chunks of 2 generations, each chunk P x 2 calls + 1 dev evaluation: 6 generations
    runs = [
        run_blackbox(
            service,
            param,
            train,
            dev,
            BlackBoxConfig(
                strategy="sep_cma",
                population=P,
                sigma0=SIGMA0,
                budget=27,
                chunk=2,
                buckets=1,
                eval_init=False,
                seed=seed,
            ),
            progress=False,
        )  # fmt: skip
        for seed in (0, 1)
    ]
    assert [r.generations for r in runs] == [6, 6]
    sweeper = Sweeper(
        service, param, train, SweepConfig(strategy="sep_cma", population=P, generations=6)
    )
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])
    sweep = sweeper.run(keys, make_hparams(2, sigma0=SIGMA0, loss="ce"))
    for i, run in enumerate(runs):
        np.testing.assert_allclose(sweep.final_mean_SxR[i], run.final_mean, rtol=1e-5, atol=1e-6)
        for name in ("loss_mean", "loss_min", "acc_max"):
            want = [h[name] for h in run.history]
            np.testing.assert_allclose(sweep.curves[name][i], want, rtol=1e-5, err_msg=name)
