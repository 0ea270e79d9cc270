"""BBT and BBTv2 for the black-box engine (docs/methods.md, BBT); everything here is user side.

BBT: p = A z + p0 (a T x D prefix prompt, "prompt" request); the user sends A z and the
provider adds p0 (`service.p0`: by default BBT's prefix words in the served model's tokens),
so z = 0 is a real prompt. A is the user's, built from the provider's public info.

BBTv2 (Sun et al., 2022; deepbbt.py): one z_l, one random A_l and one CMA-ES per tuned layer;
layer l's prompt A_l z_l is added before layer l ("deep_prompt" request). Every round steps
each layer's ES once, in layer order, the other layers fixed at their ES's best (pycma's
`xbest`); then the deep prompt is scored on dev (1 call) and the best on dev is kept. A round
costs L x P + 1 calls, so 8000 calls at P = 20 over SmolLM2's 30 layers are 13 rounds
(7814 calls), as in BBTv2 (8000 // 600, dev not counted). A_l has std
alpha x s_l / (sqrt(d) x sigma), s_l the published hidden-state std entering layer l
(`PublicInfo.hidden_std`); BBTv2 runs alpha = sigma = sigma0 = 0.2. A_l is regenerated from
its key inside the compiled round (L x d x T x D floats would not fit for 30 layers). A
round is one unit of the engine's driver (`blackbox.run_es`): budget, dev selection, log and
an exactly resuming checkpoint are the engine's.
"""

from __future__ import annotations

import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.contract import PublicInfo
from cbp_jax.data.batching import Inputs
from cbp_jax.es import make_strategy
from cbp_jax.methods.blackbox import (
    BlackBoxConfig,
    BlackBoxResult,
    ESMethod,
    Parameterization,
    make_eval_fn,
    run_es,
)
from cbp_jax.methods.calls import schedule
from cbp_jax.methods.chunked_scoring import generation
from cbp_jax.methods.losses import get_loss
from cbp_jax.prompts.projection import ProjectionConfig, project, random_projection


def bbt_parameterization(key, info: PublicInfo, proj: ProjectionConfig) -> Parameterization:
    """BBT's payload A z, A a random projection at the scale of the word embeddings."""
    a = random_projection(key, proj, info.hidden_size, info.embedding_std)
    d = info.hidden_size
    return Parameterization(
        kind="prompt",
        num_dims=proj.num_dims,
        payload_fn=lambda a_RxTD, z: project(a_RxTD, z, d),
        payload_params=a,
    )


def bbtv2_plan(budget: int, population: int, num_layers: int, eval_init: bool = True):
    """(rounds, dev evaluations) a budget buys: L x P + 1 calls per round, 1 for the start
    (`calls.schedule` with one round per chunk, as `run_es` runs it)."""
    return schedule(budget, num_layers * population, 1, 1, eval_init)[:2]


def layer_stds(info, layers) -> np.ndarray:
    """The scale s_l of each tuned layer's projection: the published hidden-state std."""
    if len(info.hidden_std) != info.num_layers:
        warnings.warn(
            "the service publishes no per-layer hidden-state std; BBTv2 falls back to the "
            "word-embedding std for every layer",
            stacklevel=3,
        )
        return np.full(len(layers), info.embedding_std, np.float32)
    return np.asarray([info.hidden_std[l] for l in layers], np.float32)


def _make_fns(es, es_params, proj: ProjectionConfig, d: int, cfg: BlackBoxConfig):
    loss_fn = get_loss(cfg.loss)

    def payload(payload_params, z_PxR):  # layer l's population, the other layers fixed
        base_LxTxD, a_RxTD, l = payload_params
        n_l, p = base_LxTxD.shape[0], z_PxR.shape[0]
        deep = jnp.broadcast_to(base_LxTxD[:, None], (n_l, p, *base_LxTxD.shape[1:]))
        return deep.at[l].set(project(a_RxTD, z_PxR, d))

    param = Parameterization("deep_prompt", proj.num_dims, payload)

    def layer_step(carry, xs, oracle, data):
        base_LxTxD, key = carry
        state, l, a_key, std = xs
        a_RxTD = random_projection(a_key, proj, d, std)
        (state, key), metrics = generation(
            es, es_params, param, loss_fn, cfg.score_reduce, (state, key), oracle,
            (base_LxTxD, a_RxTD, l), data,
        )  # fmt: skip
        base_LxTxD = base_LxTxD.at[l].set(project(a_RxTD, state.best_solution[None], d)[0])
        return (base_LxTxD, key), (state, metrics)

    @jax.jit
    def round_fn(states, base, key, xs, oracle, data):
        (base, key), (states, metrics) = jax.lax.scan(
            lambda c, x: layer_step(c, x, oracle, data), (base, key), (states, *xs)
        )
        return states, base, key, metrics

    return round_fn, make_eval_fn(lambda deep, _: deep[:, None], cfg)


def run_bbtv2(
    service,
    train: Inputs,
    dev: Inputs,
    cfg: BlackBoxConfig,
    proj: ProjectionConfig,
    *,
    layers: tuple[int, ...] | None = None,
    run_dir: str | pathlib.Path | None = None,
    progress: bool = True,
):
    """Interleaved per-layer CMA-ES within `cfg.budget` calls (see the module docstring).

    Returns (deep prompt L x T x D kept on dev, one `BlackBoxResult` per tuned layer, in
    layer order: its generations, best z, final mean and per-generation history; the dev
    figures and the call ledger are the run's, the same in every layer's result).
    """
    info = service.public_info()
    layers = tuple(range(info.num_layers)) if layers is None else tuple(layers)
    if (
        not layers
        or len(set(layers)) != len(layers)
        or not set(layers) <= set(range(info.num_layers))
    ):
        raise ValueError(f"layers must be distinct ids in [0, {info.num_layers}), got {layers}")
    d, n = info.hidden_size, len(layers)
    es, es_params = make_strategy(cfg.strategy, cfg.population, proj.num_dims, cfg.sigma0)
    key_init, key_run, key_a = jax.random.split(jax.random.key(cfg.seed), 3)
    init = [es.init(k, jnp.zeros(proj.num_dims), es_params) for k in jax.random.split(key_init, n)]
    states = jax.tree.map(lambda *x: jnp.stack([jnp.array(v, dtype=v.dtype) for v in x]), *init)
    a_keys = jax.random.split(key_a, info.num_layers)[np.asarray(layers)]
    xs = (jnp.asarray(layers, jnp.int32), a_keys, jnp.asarray(layer_stds(info, layers)))
    base = jnp.zeros((info.num_layers, proj.prompt_len, d), jnp.float32)
    round_fn, evaluate = _make_fns(es, es_params, proj, d, cfg)
    oracle = service.oracle("deep_prompt")
    train_d, dev_d = train.buckets(cfg.buckets), dev.buckets(cfg.buckets)

    def advance(tree, _):
        states, base, key, metrics = round_fn(
            tree["es"], tree["base"], tree["key"], xs, oracle, train_d
        )
        return {**tree, "es": states, "key": key, "base": base}, metrics

    def rows(done, _, metrics):
        r = done + 1
        return [
            {
                "round": r,
                "generation": r,
                "layer": l,
                **{k: float(v[j]) for k, v in metrics.items()},
            }
            for j, l in enumerate(layers)
        ]

    method = ESMethod(
        tree={"es": states, "key": key_run, "base": base, "best": np.asarray(base)},
        advance=advance,
        kept=lambda tree: tree["base"],
        evaluate=lambda deep: evaluate(deep, oracle, None, dev_d),
        rows=rows,
        unit_calls=n * cfg.population,
        unit=f"BBTv2 round: {n} layers x {cfg.population} candidates",
        chunk=1,
        step_key="round",
        best_key="best",
        desc=f"BBTv2 {n} layers",
    )
    tree, history, totals = run_es(
        service, method, train, dev, cfg, run_dir=run_dir, progress=progress
    )
    states = tree["es"]
    results = [
        BlackBoxResult(
            best_z=np.asarray(states.best_solution[j]),
            final_mean=np.asarray(states.mean[j]),
            history=[h for h in history if h["layer"] == l],
            layer=l,
            **totals,
        )
        for j, l in enumerate(layers)
    ]
    return np.asarray(tree["best"]), results
