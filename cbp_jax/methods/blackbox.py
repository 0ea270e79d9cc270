"""User-side black-box tuning engine: CMA-ES over z, scored through the service boundary.

A generation (`chunked_scoring.generation`: ask -> payload, e.g. BBT's A z -> ONE oracle
call on the whole k-shot train set -> loss with the user's labels -> tell) runs under
`lax.scan` in chunks. Between chunks `run_es` charges the service for the chunk's calls
before it runs, scores the ES mean on the k-shot dev set (the best is kept, `replaces`) and
leaves the log, checkpoint and resume to the one loop (`cbp_jax.loop`), so a killed run
resumes to the same result; BBTv2 (bbt.py) runs under it too, one unit a round.

API calls as BBT counts them (docs/methods.md): a generation costs P calls, a dev evaluation
1, charged within `budget` and reported apart (`dev_calls`); `calls.plan` gives the schedule
(8000 calls at P = 20, chunk 5: 395 generations and 80 dev evaluations, the start point's
included; the start point is scored too, so the kept prompt can be z0 itself).
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import Inputs
from cbp_jax.distributed import check_divisible, population_sharding
from cbp_jax.es import make_strategy
from cbp_jax.loop import LoopState, run_loop, write_log
from cbp_jax.methods.blackbox_types import (
    BlackBoxConfig,
    BlackBoxResult,
    Parameterization,
    replaces,
)
from cbp_jax.methods.calls import CallLedger, schedule
from cbp_jax.methods.chunked_scoring import generation, oracle_scores
from cbp_jax.methods.losses import accuracy, get_loss


def make_chunk_fn(
    es, es_params, param: Parameterization, cfg: BlackBoxConfig, n_gens: int, z_sharding=None
):
    """Jitted: run n_gens generations (`chunked_scoring.generation`) from (es_state, key);
    returns the new carry and the per-generation metrics."""
    loss_fn = get_loss(cfg.loss)

    def step(carry, _, oracle, payload_params, data):
        return generation(
            es, es_params, param, loss_fn, cfg.score_reduce, carry, oracle, payload_params,
            data, z_sharding=z_sharding,
        )  # fmt: skip

    @jax.jit
    def chunk(carry, oracle, payload_params, data):
        return jax.lax.scan(
            lambda c, x: step(c, x, oracle, payload_params, data), carry, length=n_gens
        )

    return chunk


def make_eval_fn(payload_of, cfg: BlackBoxConfig):
    """Jitted evaluate(kept, oracle, payload_params, data) -> (loss, accuracy) of the one
    payload payload_of(kept, payload_params) on a batch (one API call)."""
    loss_fn = get_loss(cfg.loss)

    @jax.jit
    def evaluate(kept, oracle, payload_params, data):
        buckets, labels = data
        scores = oracle_scores(oracle, payload_of(kept, payload_params), buckets, cfg.score_reduce)
        return loss_fn(scores, labels)[0], accuracy(scores, labels)[0]

    return evaluate


@dataclasses.dataclass(frozen=True)
class ESMethod:
    """What one black-box method brings to `run_es`: the rest (budget, dev selection, log,
    checkpoint) is shared. A unit is what the schedule counts (a generation; a BBTv2 round).

    tree: the initial state {"es", "key", best_key: ..., ...}; advance(tree, n) -> (tree,
    metrics): n compiled units; kept(tree): what dev scores and the run keeps (the ES mean,
    BBTv2's deep prompt); evaluate(kept) -> (dev loss, dev acc); rows(units done, n,
    metrics): the log rows of n units, one per population scored (P calls each).
    """

    tree: dict
    advance: Callable[[dict, int], tuple[dict, Any]]
    kept: Callable[[dict], Any]
    evaluate: Callable[[Any], tuple[Any, Any]]
    rows: Callable[[int, int, dict], list[dict]]
    unit_calls: int
    unit: str  # what one unit is, for the error when the budget cannot pay for one
    chunk: int
    step_key: str
    best_key: str
    desc: str


def _milestones(row, milestones, on_milestone, after, upto, best, spent):
    """Evaluate `best` for each milestone in (after, upto], into row["milestones"]."""
    for m in sorted(set(milestones)):
        if on_milestone is not None and after < m <= upto:
            point = {"budget": m, "calls": int(spent), **on_milestone(best)}
            row.setdefault("milestones", []).append(point)


def run_es(
    service, m: ESMethod, train: Inputs, dev: Inputs, cfg: BlackBoxConfig, *,
    run_dir=None, progress=True, milestones=(), on_milestone=None,
) -> tuple[dict, list[dict], dict]:  # fmt: skip
    """Units of `m` in chunks within `cfg.budget` calls through `cfg`'s schedule (the start
    point on dev, then chunks each followed by one dev evaluation: `calls.schedule`). Returns
    (final tree, history, the run's `BlackBoxResult` fields: dev figures, calls, units)."""
    if cfg.budget < m.unit_calls + 1:
        raise ValueError(f"a budget of {cfg.budget} API calls cannot pay for one {m.unit} + 1 "
                         f"dev evaluation = {m.unit_calls + 1} calls")  # fmt: skip
    n_dev = dev.tokens_BxS.shape[0]

    def start(state):
        if not (cfg.eval_init and cfg.budget >= 2 + m.unit_calls):
            return state
        service.reserve(1)
        kept = m.kept(state.tree)
        dev_loss, dev_acc = (float(x) for x in m.evaluate(kept))
        ledger = CallLedger()
        ledger.charge(dev, dev=True)
        info = dict(calls=ledger.calls, ledger=ledger.as_dict(), best_acc=dev_acc)
        info.update(best_loss=dev_loss, start_dev_acc=dev_acc)
        return LoopState({**state.tree, m.best_key: np.asarray(kept)}, 0, info)

    def step(state):
        info, ledger = dict(state.info), CallLedger(**state.info["ledger"])
        after = ledger.calls if state.step > 0 else -np.inf  # milestones reached before
        n = min(m.chunk, n_units - state.step)
        service.reserve(n * m.unit_calls + 1)
        tree, metrics = m.advance(state.tree, n)
        kept = m.kept(tree)
        dev_loss, dev_acc = (float(x) for x in m.evaluate(kept))
        rows = []
        for row in m.rows(state.step, n, jax.tree.map(np.asarray, metrics)):
            ledger.charge(train, cfg.population)
            rows.append({**row, **ledger.as_dict()})
        ledger.charge(dev, dev=True)
        rows[-1].update(dev_loss=dev_loss, dev_acc=dev_acc, **ledger.as_dict())
        best = {"acc": info["best_acc"], "loss": info["best_loss"]}
        if replaces(dev_acc, dev_loss, best, n_dev, cfg.dev_margin):
            tree = {**tree, m.best_key: np.asarray(kept)}
            info.update(best_acc=dev_acc, best_loss=dev_loss)
        args = (after, ledger.calls, tree[m.best_key], ledger.calls)
        _milestones(rows[-1], milestones, on_milestone, *args)
        info.update(calls=ledger.calls, ledger=ledger.as_dict())
        return LoopState(tree, state.step + n, info), rows

    def on_resume(state):  # calls made before the interruption still count
        service.reserve(CallLedger(**state.info["ledger"]).calls)

    n_units = schedule(cfg.budget, m.unit_calls, 1, m.chunk, cfg.eval_init)[0]
    info = dict(calls=0, ledger=CallLedger().as_dict(), best_acc=-1.0, best_loss=float("inf"))
    state = LoopState(m.tree, 0, {**info, "start_dev_acc": None})
    state, history, resumed_at = run_loop(
        step, state, n_units, run_dir=run_dir, step_key=m.step_key, start=start,
        on_resume=on_resume, desc=m.desc, postfix=("loss_mean", "dev_acc"), progress=progress,
    )  # fmt: skip
    info, ledger = state.info, CallLedger(**state.info["ledger"])
    if history:  # milestones the budget stopped short of (e.g. 8000 at 7999 calls spent)
        left = tuple(x for x in milestones if x <= cfg.budget)
        args = (ledger.calls, np.inf, state.tree[m.best_key], ledger.calls)
        _milestones(history[-1], left, on_milestone, *args)
        if run_dir is not None:
            write_log(run_dir, history)
    totals = dict(best_dev_acc=info["best_acc"], best_dev_loss=info["best_loss"])
    totals.update(calls_used=ledger.calls, generations=state.step, resumed_at_generation=resumed_at)
    totals.update(start_dev_acc=info["start_dev_acc"], dev_calls=ledger.dev_calls)
    totals.update(examples_scored=ledger.examples_scored, tokens_scored=ledger.tokens_scored)
    return state.tree, history, totals


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
    milestones: tuple[int, ...] = (),
    on_milestone=None,
) -> BlackBoxResult:
    """Tune z with CMA-ES through `service` until the API budget is spent.

    run_dir: the Orbax checkpoint and `log.jsonl`; an existing run there resumes.
    milestones / on_milestone: a budget curve from one run: after the chunk whose calls
    first reach a milestone (any left at the end: on the final kept z), `on_milestone(best_z)`
    -> dict goes into that chunk's history row under "milestones", with the calls spent.
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
    oracle = service.oracle(param.kind)
    train_d, dev_d = train.buckets(cfg.buckets), dev.buckets(cfg.buckets)
    check_divisible(cfg.population, mesh)
    z_sharding = None if mesh is None else population_sharding(mesh)
    evaluate = make_eval_fn(lambda z_R, pp: param.payload_fn(pp, z_R[None]), cfg)
    chunk_fns = {}

    def advance(tree, n):
        if n not in chunk_fns:
            chunk_fns[n] = make_chunk_fn(es, es_params, param, cfg, n, z_sharding)
        carry = (tree["es"], tree["key"])
        (es_state, key), metrics = chunk_fns[n](carry, oracle, param.payload_params, train_d)
        return {**tree, "es": es_state, "key": key}, metrics

    def rows(done, n, metrics):
        return [
            {"generation": done + i + 1, **{k: float(v[i]) for k, v in metrics.items()}}
            for i in range(n)
        ]

    method = ESMethod(
        tree={"es": es_state, "key": key_run, "best_z": np.asarray(mean0)},
        advance=advance,
        kept=lambda tree: tree["es"].mean,
        evaluate=lambda z: evaluate(z, oracle, param.payload_params, dev_d),
        rows=rows,
        unit_calls=cfg.population,
        unit=f"generation: {cfg.population} candidates on the train set",
        chunk=cfg.chunk,
        step_key="generation",
        best_key="best_z",
        desc=f"{cfg.strategy} P={cfg.population}",
    )
    tree, history, totals = run_es(
        service, method, train, dev, cfg, run_dir=run_dir, progress=progress,
        milestones=milestones, on_milestone=on_milestone,
    )  # fmt: skip
    best_z, final_mean = np.asarray(tree["best_z"]), np.asarray(tree["es"].mean)
    return BlackBoxResult(best_z=best_z, final_mean=final_mean, history=history, **totals)
