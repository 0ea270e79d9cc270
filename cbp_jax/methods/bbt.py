"""BBT and BBTv2 parameterisations for the black-box engine (METHODS.md, BBT).

BBT: one z in R^d, p = A z + p0, a T x D prefix prompt sent as a "prompt" request; the
user sends A z and the provider adds p0, the embeddings of T real vocabulary tokens
(`bbt_adapters`; BBT's code uses ids 1000-1049), so z = 0 is a real prompt.
BBTv2: one z_l and one A_l per layer, sent as a "deep_prompt" request; optimised layer by
layer in turn (each phase a fresh CMA-ES on one layer, the others frozen at their best).
Everything here is user side: A is the user's, built from the provider's public info.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.blackbox import (
    BlackBoxConfig,
    BlackBoxResult,
    Parameterization,
    run_blackbox,
)
from cbp_jax.prompts.projection import ProjectionConfig, project, random_projection
from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt
from cbp_jax.service.provider import PublicInfo


def bbt_adapters(proj: ProjectionConfig) -> tuple:
    """The provider's adapters for BBT / BBTv2 runs: "none", and "prompt" / "deep_prompt"
    with BBT's p0 (embeddings of token ids p0_offset..p0_offset+T-1, added on the provider
    side; none when proj.p0_offset is None). Build every service of a run with them, the
    test-set evaluator too, since the payload is A z alone."""
    ids = proj.p0_token_ids
    return (NoPrompt(), SoftPrompt(p0_token_ids=ids), DeepPrompt(p0_token_ids=ids))


def bbt_parameterization(key, info: PublicInfo, proj: ProjectionConfig) -> Parameterization:
    a = random_projection(key, proj, info.hidden_size, info.embedding_std)
    d = info.hidden_size
    return Parameterization(
        kind="prompt",
        num_dims=proj.num_dims,
        payload_fn=lambda a_RxTD, z: project(a_RxTD, z, d),
        payload_params=a,
    )


def _deep_payload(params, z_PxR, hidden_size):
    a_RxTD, base_LxTxD, layer = params
    p = z_PxR.shape[0]
    deep = jnp.broadcast_to(base_LxTxD[:, None], (base_LxTxD.shape[0], p, *base_LxTxD.shape[1:]))
    return deep.at[layer].add(project(a_RxTD, z_PxR, hidden_size))


def run_bbtv2(
    service,
    train: Inputs,
    dev: Inputs,
    cfg: BlackBoxConfig,
    proj: ProjectionConfig,
    *,
    rounds: int = 1,
    layers: tuple[int, ...] | None = None,
    run_dir: str | pathlib.Path | None = None,
    progress: bool = True,
):
    """Layer-by-layer CMA-ES over per-layer z; the budget is split evenly over phases.

    A phase needs at least one generation (population + 1 dev calls). When the budget
    cannot pay for every phase, the first phases that it can pay for run (a warning names
    the layers left at zero); when it cannot pay for one, `run_blackbox` raises.
    Returns (deep prompts L x T x D of the best z per layer, list of per-phase results).
    """
    info = service.public_info()
    layers = tuple(range(info.num_layers)) if layers is None else layers
    phases = [(r, l) for r in range(rounds) for l in layers]
    per_phase = cfg.population + 1  # one generation and its dev evaluation
    affordable = cfg.budget // per_phase
    if 0 < affordable < len(phases):
        skipped = sorted({l for _, l in phases[affordable:]} - {l for _, l in phases[:affordable]})
        warnings.warn(
            f"BBTv2: a budget of {cfg.budget} calls pays for {affordable} of {len(phases)} "
            f"layer phases ({per_phase} calls each at least); layers {skipped} stay untuned",
            stacklevel=2,
        )
        phases = phases[:affordable]
    phase_budget = cfg.budget // len(phases)
    shape = (info.num_layers, proj.prompt_len, info.hidden_size)
    base = jnp.zeros(shape, jnp.float32)
    z_best = np.zeros((info.num_layers, proj.num_dims), np.float32)
    keys = jax.random.split(jax.random.key(cfg.seed + 7919), info.num_layers)
    results: list[BlackBoxResult] = []
    for i, (r, l) in enumerate(phases):
        a = random_projection(keys[l], proj, info.hidden_size, info.embedding_std)
        without_l = base.at[l].set(0.0)
        param = Parameterization(
            kind="deep_prompt",
            num_dims=proj.num_dims,
            payload_fn=lambda params, z: _deep_payload(params, z, info.hidden_size),
            payload_params=(a, without_l, jnp.int32(l)),
            init_mean=z_best[l],
        )
        phase_cfg = dataclasses.replace(cfg, budget=phase_budget, seed=cfg.seed * 1000 + i)
        sub = None if run_dir is None else pathlib.Path(run_dir) / f"round{r}_layer{l}"
        res = run_blackbox(service, param, train, dev, phase_cfg, run_dir=sub, progress=progress)
        results.append(dataclasses.replace(res, layer=l))
        z_best[l] = res.best_z
        base = without_l.at[l].add(project(a, jnp.asarray(res.best_z)[None], info.hidden_size)[0])
    return np.asarray(base), results
