"""Sweeps of whole black-box ES runs, S runs as one compiled call.

`make_run_fn` is one run of the engine (every `chunked_scoring.generation` under one
`lax.scan`, no dev evaluation, nothing in Python between generations) as a pure function of
(seed key, per-run hyperparameters, oracle, payload params, data). Per-run hyperparameters
keep every shape fixed: sigma0, any other float field of the ES params (e.g. CMA's `c_mean`,
`c_1`, `c_mu`, `c_std`) and the loss (an index into `LOSS_NAMES`). `Sweeper.run` vmaps the
run over S (key, hyperparameter) pairs: one compile, one call; `sweep_shapes` compiles and
runs each (P, d) in turn. Score the returned means afterwards
(`chunked_scoring.evaluate_vectors`). A run makes generations x P calls (BBT's unit); a sweep
reserves S times that before it runs, running nothing if it does not fit.

Large populations (to 10^4): use an O(P d) strategy ("sep_cma", "lm_ma" or "snes") and set
`population_chunk` (e.g. `service.memory.chunk_for_memory`) to score, payload included, that
many candidates at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.contract import BudgetExhaustedError
from cbp_jax.data.batching import Inputs
from cbp_jax.distributed import check_divisible, population_sharding, replicate, replicated
from cbp_jax.es import EXTRA_STRATEGIES, STRATEGIES, sweep_strategy
from cbp_jax.methods.blackbox import Parameterization
from cbp_jax.methods.chunked_scoring import generation
from cbp_jax.methods.losses import get_loss

LOSS_NAMES = ("ce", "hinge")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    strategy: str = "sep_cma"
    population: int = 20
    generations: int = 10
    score_reduce: str = "logsumexp"
    buckets: int = 1
    population_chunk: int | None = None  # candidates scored at once; None: the whole population

    def __post_init__(self):
        if self.strategy not in STRATEGIES and self.strategy not in EXTRA_STRATEGIES:
            sweep_strategy(self.strategy, 2, 1)  # raises with the known names
        if self.population < 2 or self.generations < 1 or self.buckets < 1:
            raise ValueError("population must be >= 2, generations and buckets >= 1")
        if self.population_chunk is not None and self.population_chunk < 1:
            raise ValueError(f"population_chunk must be >= 1, got {self.population_chunk}")


class RunHparams(NamedTuple):
    """Per-run hyperparameters; every leaf has a leading S axis in a sweep."""

    sigma0: jax.Array
    loss_id: jax.Array
    es: dict[str, jax.Array]  # ES params fields, e.g. {"c_mean": ...}


def make_hparams(runs: int, *, sigma0=1.0, loss="ce", **es_fields) -> RunHparams:
    """Hyperparameters of S runs; each value a scalar (shared) or a length-S sequence."""

    def col(v, dtype):
        a = jnp.asarray(v, dtype)
        if a.ndim == 0:
            return jnp.full((runs,), a)
        if a.shape != (runs,):
            raise ValueError(f"expected a scalar or {runs} values, got shape {a.shape}")
        return a

    names = [loss] if isinstance(loss, str) else list(loss)
    for n in names:
        if n not in LOSS_NAMES:
            raise ValueError(f"loss {n!r} not in {LOSS_NAMES}")
    ids = [LOSS_NAMES.index(n) for n in names]
    loss_id = col(ids[0] if isinstance(loss, str) else ids, jnp.int32)
    es = {k: col(v, jnp.float32) for k, v in es_fields.items()}
    return RunHparams(col(sigma0, jnp.float32), loss_id, es)


class RunOutput(NamedTuple):
    final_mean: jax.Array  # R
    best_z: jax.Array  # R, best candidate seen (train loss)
    best_loss: jax.Array  # its train loss
    curves: dict[str, jax.Array]  # per generation: loss_mean, loss_min, acc_max, sigma


def make_run_fn(es, es_params, param: Parameterization, cfg: SweepConfig, z_sharding=None):
    """Pure run(key_data, hparams, oracle, payload_params, data) -> RunOutput."""
    mean0 = jnp.zeros(param.num_dims) if param.init_mean is None else jnp.asarray(param.init_mean)
    loss_fns = [get_loss(n) for n in LOSS_NAMES]

    def run(key_data, hp: RunHparams, oracle, payload_params, data) -> RunOutput:
        key_init, key_gens = jax.random.split(jax.random.wrap_key_data(key_data))
        params = es_params.replace(std_init=hp.sigma0, **hp.es)
        state = es.init(key_init, mean0, params)

        def loss_fn(scores, labels):
            return jnp.stack([f(scores, labels) for f in loss_fns])[hp.loss_id]

        def step(carry, _):
            carry, metrics = generation(
                es, params, param, loss_fn, cfg.score_reduce, carry, oracle, payload_params,
                data, population_chunk=cfg.population_chunk, z_sharding=z_sharding,
            )  # fmt: skip
            return carry, {**metrics, "sigma": jnp.mean(carry[0].std)}

        (state, _), curves = jax.lax.scan(step, (state, key_gens), length=cfg.generations)
        return RunOutput(state.mean, state.best_solution, state.best_fitness, curves)

    return run


@dataclasses.dataclass
class SweepResult:
    final_mean_SxR: np.ndarray
    best_z_SxR: np.ndarray
    best_loss_S: np.ndarray
    curves: dict[str, np.ndarray]  # name -> S x generations
    calls: int  # charged to the service


class Sweeper:
    """Compiled single and vmapped runs of one (strategy, P, d) over one service and data.

    mesh: optional "pop" mesh (e.g. `distributed.global_population_mesh()`); inputs are
    then replicated over it, each population sharded on it, outputs replicated.
    """

    def __init__(
        self, service, param: Parameterization, train: Inputs, cfg: SweepConfig, *, mesh=None
    ):
        self.es, self.es_params = sweep_strategy(cfg.strategy, cfg.population, param.num_dims)
        check_divisible(cfg.population, mesh)
        chunk = cfg.population_chunk
        if mesh is not None and chunk and cfg.population % chunk == 0:
            check_divisible(chunk, mesh)
        self.cfg, self.service, self.mesh = cfg, service, mesh
        self.calls_per_run = cfg.generations * cfg.population  # one call per candidate
        z_sharding = None if mesh is None else population_sharding(mesh)
        run = make_run_fn(self.es, self.es_params, param, cfg, z_sharding)
        out = None if mesh is None else replicated(mesh)
        self._one = jax.jit(run, out_shardings=out)
        self._many = jax.jit(jax.vmap(run, in_axes=(0, 0, None, None, None)), out_shardings=out)
        args = (service.oracle(param.kind), param.payload_params, train.buckets(cfg.buckets))
        self._args = args if mesh is None else replicate(args, mesh)

    def _inputs(self, keys, hp):
        inputs = (jax.random.key_data(keys), hp)
        return inputs if self.mesh is None else replicate(inputs, self.mesh)

    def run(self, keys_S, hparams: RunHparams) -> SweepResult:
        """S runs in one compiled call (S = len(keys_S)); charges S runs' calls first."""
        s = keys_S.shape[0]
        if any(x.shape[:1] != (s,) for x in jax.tree.leaves(hparams)):
            raise ValueError(f"every hyperparameter needs a leading axis of {s} runs")
        self.service.reserve(s * self.calls_per_run)
        out = self._many(*self._inputs(keys_S, hparams), *self._args)
        return _result(out, s * self.calls_per_run)

    def run_one(self, key, hparams: RunHparams) -> SweepResult:
        """One run, unbatched (hparams leaves are scalars); result has S = 1."""
        self.service.reserve(self.calls_per_run)
        out = self._one(*self._inputs(key, hparams), *self._args)
        return _result(jax.tree.map(lambda x: x[None], out), self.calls_per_run)


def _result(out: RunOutput, calls: int) -> SweepResult:
    out = jax.tree.map(np.asarray, out)
    return SweepResult(out.final_mean, out.best_z, out.best_loss, dict(out.curves), calls)


def sweep_shapes(
    service,
    make_param: Callable[[int], Parameterization],
    train: Inputs,
    cfg: SweepConfig,
    shapes: Sequence[tuple[int, int]],
    keys_S,
    hparams: RunHparams,
    *,
    budget_per_run: int | None = None,
    mesh=None,
) -> dict[tuple[int, int], Any]:
    """One sweep per (population, d) in `shapes` (a compile each), all charged up front.

    make_param(d) -> the Parameterization for dimension d. budget_per_run: if given, each
    run gets the generations it can afford at that many calls (fixed-budget comparisons);
    else cfg.generations. Returns {(P, d): SweepResult}.
    """
    plans = []
    for p, d in shapes:
        # whole generations a run affords at P calls each (BBT's maxiter = budget // popsize)
        gens = cfg.generations if budget_per_run is None else budget_per_run // p
        if gens < 1:
            raise ValueError(f"budget {budget_per_run} buys no generation at P={p}")
        plans.append(((p, d), dataclasses.replace(cfg, population=p, generations=gens)))
    total = keys_S.shape[0] * sum(c.generations * c.population for _, c in plans)
    remaining = service.calls_remaining
    if remaining is not None and total > remaining:
        raise BudgetExhaustedError(f"sweep needs {total} calls, the service has {remaining} left")
    return {
        shape: Sweeper(service, make_param(shape[1]), train, c, mesh=mesh).run(keys_S, hparams)
        for shape, c in plans
    }
