"""BBTv2 as published (Sun et al., 2022; deepbbt.py): one CMA-ES per layer, interleaved.

The deep prompt has one z_l in R^d and one random A_l per tuned layer; layer l's prompt is
A_l z_l, added before layer l to the prompt slots (which start from BBT's p0 on the
provider side, `service.provider.bbt_adapters`). Every round (BBTv2's outer loop) steps each layer's
CMA-ES once, in layer order: the population of layer l is scored with every other layer
fixed at its best so far (each ES's best candidate on the train loss, pycma's `xbest` in
BBTv2), and after the tell layer l's fixed prompt becomes A_l times its ES's best. After
each round the current deep prompt is scored on dev (1 call) and the best on dev is kept.

Budget, in BBT's unit (one candidate on one batch = one call): a round costs L x P calls
plus one dev evaluation, so a budget buys (budget - 1) // (L x P + 1) rounds and every
layer gets that many generations. BBTv2 runs budget // (P x L) rounds and does not count
its dev evaluations: 8000 calls at P = 20 over SmolLM2's 30 layers are 13 rounds here
(7814 calls), 13 generations per layer, as in BBTv2 (8000 // 600 = 13). Each layer's A_l
has std alpha x s_l / (sqrt(d) x sigma), s_l the provider's published hidden-state std
entering layer l (`PublicInfo.hidden_std`; the word embeddings' for layer 0); BBTv2 runs
alpha = sigma = 0.2 and CMA-ES sigma0 = 0.2 (set `BlackBoxConfig.sigma0` to it).
A_l is regenerated from its key inside the compiled round (L x d x T x D floats would not
fit in memory for 30 layers). Each layer's step is the engine's one generation
(`generation.generation`, the payload A_l z in layer l of the deep prompt) and a round runs
under the black-box engine's driver (`blackbox.run_es`, one unit = one round), so budget,
dev selection, log and checkpoint are the engine's: a killed run resumes from its Orbax
checkpoint after the last finished round.
"""

from __future__ import annotations

import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np

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
from cbp_jax.methods.generation import generation
from cbp_jax.methods.losses import get_loss
from cbp_jax.prompts.projection import ProjectionConfig, project, random_projection


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
    per_round = len(layers) * cfg.population + 1
    if cfg.budget < per_round:
        raise ValueError(
            f"a budget of {cfg.budget} API calls cannot pay for one BBTv2 round: "
            f"{len(layers)} layers x {cfg.population} candidates + 1 dev evaluation = "
            f"{per_round} calls"
        )
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
