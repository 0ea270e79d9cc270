"""User-side black-box tuning engine: CMA-ES over z, scored through the service boundary.

One generation is one compiled function: ask z_PxR -> payload (e.g. BBT's A z) -> the
oracle scores the whole population x batch in one call -> loss with the user's own labels
-> tell. Generations run under `lax.scan` in chunks; between chunks (Python) the service is
charged for the chunk's calls before it runs, the ES mean is scored on the k-shot dev set
(the best is kept), a JSONL log line per generation is written, and the state is
checkpointed with Orbax, so a killed run resumes to the same result.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from cbp_jax.ckpt import Checkpointer
from cbp_jax.data.batching import Inputs
from cbp_jax.es import make_strategy
from cbp_jax.methods.losses import accuracy, class_scores, get_loss
from cbp_jax.sharding import check_divisible, population_sharding


@dataclasses.dataclass(frozen=True)
class BlackBoxConfig:
    strategy: str = "lazy_cma"
    population: int = 20
    sigma0: float = 1.0
    budget: int = 8000  # API calls, train and dev together
    loss: str = "ce"
    score_reduce: str = "logsumexp"
    chunk: int = 10  # generations per compiled call; dev eval, log and checkpoint after each
    buckets: int = 4  # length buckets of the train/dev sets (less padding, same calls)
    # Score the start point (z0 for CBP) on dev before the first generation (one dev
    # evaluation of calls), so the returned best-on-dev can be the start point itself.
    eval_init: bool = True
    # Guard against fitting the k-shot dev set by chance: a new ES mean replaces the kept
    # one only if it gets more than `dev_margin` more dev examples right (0: any gain in dev
    # accuracy, or the same accuracy at a lower dev loss).
    dev_margin: int = 0
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.dev_margin, int) or self.dev_margin < 0:
            raise ValueError(f"dev_margin must be an int >= 0 (examples), got {self.dev_margin!r}")
        if self.population < 2:
            raise ValueError(f"population must be >= 2, got {self.population}")
        if self.sigma0 <= 0 or self.budget <= 0 or self.chunk <= 0 or self.buckets <= 0:
            raise ValueError("sigma0, budget and chunk must be positive")
        get_loss(self.loss)


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """How z becomes a request payload, on the user side.

    payload_fn(payload_params, z_PxR) -> payload (pure, jittable); kind: request kind.
    """

    kind: str
    num_dims: int
    payload_fn: Callable[[Any, jax.Array], jax.Array]
    payload_params: Any = None
    init_mean: np.ndarray | None = None


@dataclasses.dataclass
class BlackBoxResult:
    best_z: np.ndarray
    best_dev_acc: float
    best_dev_loss: float
    final_mean: np.ndarray
    history: list[dict]
    calls_used: int
    generations: int
    layer: int | None = None  # BBTv2: the layer this phase tuned
    start_dev_acc: float | None = None  # the start point's dev accuracy (eval_init)


def replaces(dev_acc: float, dev_loss: float, best: dict, n_dev: int, margin: int) -> bool:
    """Whether a new ES mean (dev_acc, dev_loss) replaces the kept `best` ({"acc", "loss"}):
    more than `margin` more of the n_dev dev examples right; at margin 0, ties on accuracy
    go to the lower dev loss."""
    if best["acc"] < 0:  # nothing kept yet (no start evaluation)
        return True
    gain = round((dev_acc - best["acc"]) * n_dev)
    if margin > 0:
        return gain > margin
    return (dev_acc, -dev_loss) > (best["acc"], -best["loss"])


def _scores(oracle, param, payload_params, z_PxR, buckets, reduce):
    """Class scores P x B x C, bucket by bucket (each bucket one oracle call)."""
    payload = param.payload_fn(payload_params, z_PxR)
    parts = [class_scores(oracle(payload, *bucket), reduce) for bucket in buckets]
    return jnp.concatenate(parts, axis=1)


def make_chunk_fn(
    es, es_params, param: Parameterization, cfg: BlackBoxConfig, n_gens: int, z_sharding=None
):
    """Jitted: run n_gens generations from (es_state, key); returns new carry and metrics."""
    loss_fn = get_loss(cfg.loss)

    def generation(carry, _, oracle, payload_params, data):
        es_state, key = carry
        key, k_ask, k_tell = jax.random.split(key, 3)
        z_PxR, es_state = es.ask(k_ask, es_state, es_params)
        if z_sharding is not None:
            z_PxR = jax.lax.with_sharding_constraint(z_PxR, z_sharding)
        buckets, labels = data
        scores = _scores(oracle, param, payload_params, z_PxR, buckets, cfg.score_reduce)
        losses_P = loss_fn(scores, labels)
        es_state, _ = es.tell(k_tell, z_PxR, losses_P, es_state, es_params)
        metrics = {
            "loss_mean": losses_P.mean(),
            "loss_min": losses_P.min(),
            "acc_max": accuracy(scores, labels).max(),
        }
        return (es_state, key), metrics

    @jax.jit
    def chunk(carry, oracle, payload_params, data):
        return jax.lax.scan(
            lambda c, x: generation(c, x, oracle, payload_params, data), carry, length=n_gens
        )

    return chunk


def make_eval_fn(param: Parameterization, cfg: BlackBoxConfig):
    loss_fn = get_loss(cfg.loss)

    @jax.jit
    def evaluate(z_R, oracle, payload_params, data):
        buckets, labels = data
        scores = _scores(oracle, param, payload_params, z_R[None], buckets, cfg.score_reduce)
        return loss_fn(scores, labels)[0], accuracy(scores, labels)[0]

    return evaluate


def _ckpt_state(carry, best):
    return {"es": carry[0], "key": jax.random.key_data(carry[1]), "best_z": best["z"]}


def _ckpt_meta(gen, calls, best, start_dev_acc):
    return {
        "generation": gen,
        "calls": calls,
        "best_acc": best["acc"],
        "best_loss": best["loss"],
        "start_dev_acc": start_dev_acc,
    }


def run_blackbox(
    service,
    param: Parameterization,
    train: Inputs,
    dev: Inputs,
    cfg: BlackBoxConfig,
    *,
    run_dir: str | pathlib.Path | None = None,
    mesh=None,
    progress: bool = True,
) -> BlackBoxResult:
    """Tune z with CMA-ES through `service` until the API budget is spent.

    run_dir: where the Orbax checkpoint and `log.jsonl` go; an existing run there resumes.
    mesh: optional `jax.sharding.Mesh` with a "pop" axis to shard the population over.
    """
    es, es_params = make_strategy(cfg.strategy, cfg.population, param.num_dims, cfg.sigma0)
    mean0 = jnp.zeros(param.num_dims) if param.init_mean is None else jnp.asarray(param.init_mean)
    if mean0.shape != (param.num_dims,):
        raise ValueError(f"init_mean must have shape ({param.num_dims},), got {mean0.shape}")
    key_init, key_run = jax.random.split(jax.random.key(cfg.seed))
    # Strong-type the initial state (evosax leaves weak types that tell() makes strong,
    # which would compile the chunk function twice).
    es_state = jax.tree.map(
        lambda x: jnp.array(x, dtype=x.dtype), es.init(key_init, mean0, es_params)
    )
    carry = (es_state, key_run)
    oracle = service.oracle(param.kind)
    train_d, dev_d = train.buckets(cfg.buckets), dev.buckets(cfg.buckets)
    per_gen = cfg.population * train.tokens_BxS.shape[0]
    per_eval = dev.tokens_BxS.shape[0]
    if cfg.budget < per_gen + per_eval:
        raise ValueError(
            f"a budget of {cfg.budget} API calls cannot pay for one generation: "
            f"{cfg.population} candidates x {train.tokens_BxS.shape[0]} train examples + "
            f"{per_eval} dev examples = {per_gen + per_eval} calls"
        )
    check_divisible(cfg.population, mesh)
    z_sharding = None if mesh is None else population_sharding(mesh)
    evaluate = make_eval_fn(param, cfg)
    best = {"z": np.asarray(mean0), "acc": -1.0, "loss": float("inf")}
    gen, calls, history, start_dev_acc = 0, 0, [], None
    ckpt = Checkpointer(run_dir) if run_dir is not None else None
    log_path = pathlib.Path(run_dir) / "log.jsonl" if run_dir is not None else None
    if ckpt is not None and ckpt.latest_step() is not None:
        target = {"es": carry[0], "key": jax.random.key_data(carry[1]), "best_z": best["z"]}
        state, meta = ckpt.restore(target)
        carry = (state["es"], jax.random.wrap_key_data(state["key"]))
        best = {
            "z": np.asarray(state["best_z"]),
            "acc": meta["best_acc"],
            "loss": meta["best_loss"],
        }
        gen, calls = meta["generation"], meta["calls"]
        start_dev_acc = meta.get("start_dev_acc")
        service.reserve(calls)  # calls made before the interruption still count
        history = (
            [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
        )
        history = [h for h in history if h["generation"] <= gen]
    if cfg.eval_init and calls == 0 and cfg.budget >= 2 * per_eval + per_gen:
        service.reserve(per_eval)
        dev_loss, dev_acc = (float(x) for x in evaluate(mean0, oracle, param.payload_params, dev_d))
        calls += per_eval
        best = {"z": np.asarray(mean0), "acc": dev_acc, "loss": dev_loss}
        start_dev_acc = dev_acc
        if ckpt is not None:  # a resumed run must not pay for this evaluation twice
            ckpt.save(0, _ckpt_state(carry, best), _ckpt_meta(0, calls, best, start_dev_acc))
    total_gens = (cfg.budget - calls - per_eval) // (per_gen + per_eval / cfg.chunk)
    bar = tqdm(
        total=int(total_gens),
        initial=gen,
        desc=f"{cfg.strategy} P={cfg.population}",
        disable=not progress,
    )
    chunk_fns = {}
    while True:
        n = min(cfg.chunk, (cfg.budget - calls - per_eval) // per_gen)
        if n <= 0:
            break
        service.reserve(n * per_gen + per_eval)
        if n not in chunk_fns:
            chunk_fns[n] = make_chunk_fn(es, es_params, param, cfg, n, z_sharding)
        carry, metrics = chunk_fns[n](carry, oracle, param.payload_params, train_d)
        dev_loss, dev_acc = (
            float(x) for x in evaluate(carry[0].mean, oracle, param.payload_params, dev_d)
        )
        calls += n * per_gen + per_eval
        metrics = jax.tree.map(np.asarray, metrics)
        for i in range(n):
            row = {
                "generation": gen + i + 1,
                "calls": calls - (n - 1 - i) * per_gen - per_eval,
                **{k: float(v[i]) for k, v in metrics.items()},
            }
            history.append(row)
        gen += n
        history[-1].update(calls=calls, dev_loss=dev_loss, dev_acc=dev_acc)
        if replaces(dev_acc, dev_loss, best, per_eval, cfg.dev_margin):
            best = {"z": np.asarray(carry[0].mean), "acc": dev_acc, "loss": dev_loss}
        if ckpt is not None:
            ckpt.save(gen, _ckpt_state(carry, best), _ckpt_meta(gen, calls, best, start_dev_acc))
            log_path.write_text("".join(json.dumps(h) + "\n" for h in history))
        bar.update(n)
        bar.set_postfix(loss=f"{history[-1]['loss_mean']:.3f}", dev_acc=f"{dev_acc:.3f}")
    bar.close()
    if ckpt is not None:
        ckpt.close()
    return BlackBoxResult(
        best["z"],
        best["acc"],
        best["loss"],
        np.asarray(carry[0].mean),
        history,
        calls,
        gen,
        start_dev_acc=start_dev_acc,
    )
