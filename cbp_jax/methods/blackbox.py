"""User-side black-box tuning engine: CMA-ES over z, scored through the service boundary.

One generation is one compiled function (`generation.generation`, the same one the sweeps
scan): ask z_PxR -> payload (e.g. BBT's A z) -> ONE
oracle call scores the population on the whole k-shot train set (its length buckets in one
batch) -> loss with the user's own labels -> tell. Generations run under `lax.scan` in
chunks; between chunks (Python) the service is charged for the chunk's calls before it
runs, the ES mean is scored on the k-shot dev set (the best is kept), a JSONL log line per
generation is written, and the state is checkpointed with Orbax, so a killed run resumes to
the same result.

API calls, as BBT counts them (METHODS.md). One call = one candidate prompt scored on one
batch of the user's k-shot set (train or dev), whatever its number of examples: a
generation costs P calls (not P x B), one dev evaluation of the ES mean costs 1. How this
maps to BBT's code (txsun1997/Black-Box-Tuning, bbt.py, serial mode, the default): each
CMA-ES candidate is one `LMForwardAPI.eval` call, one forward of the whole k-shot train
batch, and `num_call` grows by one; pycma runs `maxiter = budget // popsize` generations,
so 8000 calls at population 20 are 400 generations. BBT scores the dev set every
`eval_every` = 100 calls (every 5 generations at P = 20), on the candidate just scored, and
keeps the best prompt on dev. Where this engine differs:
- dev evaluations are API calls here, charged within `budget` and reported apart
  (`dev_calls`); BBT does not count them. With `chunk` = 5 (dev every 5 generations, as BBT)
  8000 calls at P = 20 buy 395 generations and 80 dev evaluations (one of the start point),
  7980 calls; `calls.plan` gives the numbers for any budget;
- dev scores the ES mean after each chunk (BBT: the latest candidate), and the start
  point is scored too (`eval_init`), so the kept prompt can be z0 itself;
- BBT's `--parallel` mode, which counts a whole population as one call (maxiter = budget),
  is not used: calls here are always per candidate, batched or not.
Length buckets only save padding: one bucketed batch is one oracle call, P calls.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from cbp_jax.ckpt import Checkpointer
from cbp_jax.data.batching import Inputs
from cbp_jax.es import make_strategy
from cbp_jax.methods.blackbox_types import (
    BlackBoxConfig,
    BlackBoxResult,
    Parameterization,
    replaces,
)
from cbp_jax.methods.calls import CallLedger, plan
from cbp_jax.methods.chunked_scoring import oracle_scores
from cbp_jax.methods.generation import generation
from cbp_jax.methods.losses import accuracy, get_loss
from cbp_jax.sharding import check_divisible, population_sharding

__all__ = [
    "BlackBoxConfig",
    "BlackBoxResult",
    "Parameterization",
    "make_chunk_fn",
    "make_eval_fn",
    "oracle_scores",
    "replaces",
    "run_blackbox",
]


def make_chunk_fn(
    es, es_params, param: Parameterization, cfg: BlackBoxConfig, n_gens: int, z_sharding=None
):
    """Jitted: run n_gens generations (`generation.generation`) from (es_state, key);
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


def make_eval_fn(param: Parameterization, cfg: BlackBoxConfig):
    loss_fn = get_loss(cfg.loss)

    @jax.jit
    def evaluate(z_R, oracle, payload_params, data):
        buckets, labels = data
        payload = param.payload_fn(payload_params, z_R[None])
        scores = oracle_scores(oracle, payload, buckets, cfg.score_reduce)
        return loss_fn(scores, labels)[0], accuracy(scores, labels)[0]

    return evaluate


def _ckpt_state(carry, best):
    return {"es": carry[0], "key": jax.random.key_data(carry[1]), "best_z": best["z"]}


def _ckpt_meta(gen, ledger, best, start_dev_acc):
    return {
        "generation": gen,
        "calls": ledger.calls,
        "ledger": ledger.as_dict(),
        "best_acc": best["acc"],
        "best_loss": best["loss"],
        "start_dev_acc": start_dev_acc,
    }


def _reach_milestones(history, milestones, on_milestone, calls, best_z, spent=None):
    """Evaluate `best_z` once for every milestone <= calls not yet in `history` (in place)."""
    if on_milestone is None or not milestones:
        return
    done = {m["budget"] for h in history for m in h.get("milestones", ())}
    for m in sorted(set(milestones) - done):
        if m <= calls:
            point = {"budget": m, "calls": int(calls if spent is None else spent)}
            history[-1].setdefault("milestones", []).append({**point, **on_milestone(best_z)})


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

    Each generation costs P calls, each dev evaluation 1 (`calls.plan` gives the schedule).
    run_dir: where the Orbax checkpoint and `log.jsonl` go; an existing run there resumes.
    milestones / on_milestone: budget curves from one run. When the calls spent first reach
    a milestone (checked after each chunk; any left at the end run on the final kept z),
    `on_milestone(best_z)` -> dict (e.g. the experimenter's test accuracy of the kept z) is
    stored in that chunk's history row under "milestones", with the budget and calls spent.
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
    per_gen, per_eval = cfg.population, 1  # calls: one per candidate per batch
    if cfg.budget < per_gen + per_eval:
        raise ValueError(
            f"a budget of {cfg.budget} API calls cannot pay for one generation: "
            f"{cfg.population} candidates on the train set + 1 dev evaluation = "
            f"{per_gen + per_eval} calls"
        )
    check_divisible(cfg.population, mesh)
    z_sharding = None if mesh is None else population_sharding(mesh)
    evaluate = make_eval_fn(param, cfg)
    best = {"z": np.asarray(mean0), "acc": -1.0, "loss": float("inf")}
    gen, ledger, history, start_dev_acc, resumed_at = 0, CallLedger(), [], None, 0
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
        gen = resumed_at = meta["generation"]
        if "ledger" not in meta:
            raise ValueError(
                f"{run_dir}: checkpoint from before calls were counted per batch; "
                "start the run in a new directory"
            )
        ledger = CallLedger(**meta["ledger"])
        start_dev_acc = meta.get("start_dev_acc")
        service.reserve(ledger.calls)  # calls made before the interruption still count
        history = (
            [json.loads(x) for x in log_path.read_text().splitlines()] if log_path.exists() else []
        )
        history = [h for h in history if h["generation"] <= gen]
    if cfg.eval_init and ledger.calls == 0 and cfg.budget >= 2 * per_eval + per_gen:
        service.reserve(per_eval)
        dev_loss, dev_acc = (float(x) for x in evaluate(mean0, oracle, param.payload_params, dev_d))
        ledger.charge(dev, dev=True)
        best = {"z": np.asarray(mean0), "acc": dev_acc, "loss": dev_loss}
        start_dev_acc = dev_acc
        if ckpt is not None:  # a resumed run must not pay for this evaluation twice
            ckpt.save(0, _ckpt_state(carry, best), _ckpt_meta(0, ledger, best, start_dev_acc))
    total_gens = gen + plan(cfg.budget - ledger.calls, cfg.population, cfg.chunk, False)[0]
    bar = tqdm(
        total=int(total_gens),
        initial=gen,
        desc=f"{cfg.strategy} P={cfg.population}",
        disable=not progress,
    )
    chunk_fns = {}
    while True:
        n = min(cfg.chunk, (cfg.budget - ledger.calls - per_eval) // per_gen)
        if n <= 0:
            break
        service.reserve(n * per_gen + per_eval)
        if n not in chunk_fns:
            chunk_fns[n] = make_chunk_fn(es, es_params, param, cfg, n, z_sharding)
        carry, metrics = chunk_fns[n](carry, oracle, param.payload_params, train_d)
        dev_loss, dev_acc = (
            float(x) for x in evaluate(carry[0].mean, oracle, param.payload_params, dev_d)
        )
        metrics = jax.tree.map(np.asarray, metrics)
        for i in range(n):
            ledger.charge(train, cfg.population)
            row = {"generation": gen + i + 1, **{k: float(v[i]) for k, v in metrics.items()}}
            history.append({**row, **ledger.as_dict()})
        ledger.charge(dev, dev=True)
        gen += n
        history[-1].update(dev_loss=dev_loss, dev_acc=dev_acc, **ledger.as_dict())
        if replaces(dev_acc, dev_loss, best, dev.tokens_BxS.shape[0], cfg.dev_margin):
            best = {"z": np.asarray(carry[0].mean), "acc": dev_acc, "loss": dev_loss}
        _reach_milestones(history, milestones, on_milestone, ledger.calls, best["z"])
        if ckpt is not None:
            ckpt.save(gen, _ckpt_state(carry, best), _ckpt_meta(gen, ledger, best, start_dev_acc))
            log_path.write_text("".join(json.dumps(h) + "\n" for h in history))
        bar.update(n)
        bar.set_postfix(loss=f"{history[-1]['loss_mean']:.3f}", dev_acc=f"{dev_acc:.3f}")
    bar.close()
    if history:  # milestones the budget stopped short of (e.g. 8000 at 7999 calls spent)
        left = tuple(m for m in milestones if m <= cfg.budget)
        _reach_milestones(history, left, on_milestone, float("inf"), best["z"], ledger.calls)
        if log_path is not None:
            log_path.write_text("".join(json.dumps(h) + "\n" for h in history))
    if ckpt is not None:
        ckpt.close()
    return BlackBoxResult(
        best["z"],
        best["acc"],
        best["loss"],
        np.asarray(carry[0].mean),
        history,
        ledger.calls,
        gen,
        start_dev_acc=start_dev_acc,
        dev_calls=ledger.dev_calls,
        examples_scored=ledger.examples_scored,
        tokens_scored=ledger.tokens_scored,
        resumed_at_generation=resumed_at,
    )
