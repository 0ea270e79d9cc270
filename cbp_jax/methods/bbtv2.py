"""BBTv2 as published (Sun et al., 2022; deepbbt.py): one CMA-ES per layer, interleaved.

The deep prompt has one z_l in R^d and one random A_l per tuned layer; layer l's prompt is
A_l z_l, added before layer l to the prompt slots (which start from BBT's p0 on the
provider side, `service.methods.bbt_adapters`). Every round (BBTv2's outer loop) steps each layer's
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
fit in memory for 30 layers). A killed run resumes from its Orbax checkpoint after the
last finished round.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from cbp_jax.ckpt import Checkpointer
from cbp_jax.data.batching import Inputs
from cbp_jax.es import make_strategy
from cbp_jax.methods.blackbox import BlackBoxConfig, BlackBoxResult, replaces
from cbp_jax.methods.calls import CallLedger
from cbp_jax.methods.chunked_scoring import oracle_scores
from cbp_jax.methods.losses import accuracy, get_loss
from cbp_jax.prompts.projection import ProjectionConfig, project, random_projection


def bbtv2_plan(budget: int, population: int, num_layers: int, eval_init: bool = True):
    """(rounds, dev evaluations) a budget buys: L x P + 1 calls per round, 1 for the start."""
    per_round = num_layers * population + 1
    start = 1 if eval_init and budget >= 1 + per_round else 0
    rounds = (budget - start) // per_round
    return rounds, rounds + start


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

    def layer_step(carry, xs, oracle, data):
        base_LxTxD, key = carry
        state, l, a_key, std = xs
        a_RxTD = random_projection(a_key, proj, d, std)
        key, k_ask, k_tell = jax.random.split(key, 3)
        z_PxR, state = es.ask(k_ask, state, es_params)
        n_l, p = base_LxTxD.shape[0], z_PxR.shape[0]
        deep = jnp.broadcast_to(base_LxTxD[:, None], (n_l, p, *base_LxTxD.shape[1:]))
        deep = deep.at[l].set(project(a_RxTD, z_PxR, d))
        buckets, labels = data
        scores = oracle_scores(oracle, deep, buckets, cfg.score_reduce)
        losses_P = loss_fn(scores, labels)
        state, _ = es.tell(k_tell, z_PxR, losses_P, state, es_params)
        base_LxTxD = base_LxTxD.at[l].set(project(a_RxTD, state.best_solution[None], d)[0])
        metrics = {
            "loss_mean": losses_P.mean(),
            "loss_min": losses_P.min(),
            "acc_max": accuracy(scores, labels).max(),
        }
        return (base_LxTxD, key), (state, metrics)

    @jax.jit
    def round_fn(states, base, key, xs, oracle, data):
        (base, key), (states, metrics) = jax.lax.scan(
            lambda c, x: layer_step(c, x, oracle, data), (base, key), (states, *xs)
        )
        return states, base, key, metrics

    @jax.jit
    def evaluate(base, oracle, data):
        buckets, labels = data
        scores = oracle_scores(oracle, base[:, None], buckets, cfg.score_reduce)
        return loss_fn(scores, labels)[0], accuracy(scores, labels)[0]

    return round_fn, evaluate


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
    n_dev = dev.tokens_BxS.shape[0]
    best = {"deep": np.asarray(base), "acc": -1.0, "loss": float("inf")}
    rnd, ledger, history, start_dev_acc, key = 0, CallLedger(), [], None, key_run
    ckpt = Checkpointer(run_dir) if run_dir is not None else None
    log_path = pathlib.Path(run_dir) / "log.jsonl" if run_dir is not None else None

    def state_tree():
        return {"es": states, "key": jax.random.key_data(key), "base": base, "best": best["deep"]}

    def save():
        if ckpt is not None:
            meta = {"round": rnd, "ledger": ledger.as_dict(), "best_acc": best["acc"]}
            meta.update(best_loss=best["loss"], start_dev_acc=start_dev_acc)
            ckpt.save(rnd, state_tree(), meta)
            log_path.write_text("".join(json.dumps(h) + "\n" for h in history))

    if ckpt is not None and ckpt.latest_step() is not None:
        state, meta = ckpt.restore(state_tree())
        states, base = state["es"], state["base"]
        key = jax.random.wrap_key_data(state["key"])
        best = {
            "deep": np.asarray(state["best"]),
            "acc": meta["best_acc"],
            "loss": meta["best_loss"],
        }
        rnd, ledger = meta["round"], CallLedger(**meta["ledger"])
        start_dev_acc = meta["start_dev_acc"]
        service.reserve(ledger.calls)  # calls made before the interruption still count
        history = [json.loads(x) for x in log_path.read_text().splitlines()]
        history = [h for h in history if h["round"] <= rnd]
    if cfg.eval_init and ledger.calls == 0 and cfg.budget >= 1 + per_round:
        service.reserve(1)
        dev_loss, dev_acc = (float(x) for x in evaluate(base, oracle, dev_d))
        ledger.charge(dev, dev=True)
        best.update(acc=dev_acc, loss=dev_loss)
        start_dev_acc = dev_acc
        save()
    total = rnd + (cfg.budget - ledger.calls) // per_round
    bar = tqdm(total=total, initial=rnd, desc=f"BBTv2 {n} layers", disable=not progress)
    while cfg.budget - ledger.calls >= per_round:
        service.reserve(per_round)
        states, base, key, metrics = round_fn(states, base, key, xs, oracle, train_d)
        dev_loss, dev_acc = (float(x) for x in evaluate(base, oracle, dev_d))
        rnd += 1
        metrics = jax.tree.map(np.asarray, metrics)
        for j, l in enumerate(layers):
            ledger.charge(train, cfg.population)
            row = {"round": rnd, "generation": rnd, "layer": l}
            history.append({**row, **{k: float(v[j]) for k, v in metrics.items()}})
            history[-1].update(ledger.as_dict())
        ledger.charge(dev, dev=True)
        history[-1].update(dev_loss=dev_loss, dev_acc=dev_acc, **ledger.as_dict())
        if replaces(dev_acc, dev_loss, best, n_dev, cfg.dev_margin):
            best = {"deep": np.asarray(base), "acc": dev_acc, "loss": dev_loss}
        save()
        bar.update(1)
        bar.set_postfix(loss=f"{metrics['loss_mean'].mean():.3f}", dev_acc=f"{dev_acc:.3f}")
    bar.close()
    if ckpt is not None:
        ckpt.close()
    totals = dict(
        calls_used=ledger.calls,
        generations=rnd,
        start_dev_acc=start_dev_acc,
        dev_calls=ledger.dev_calls,
        examples_scored=ledger.examples_scored,
        tokens_scored=ledger.tokens_scored,
    )
    results = [
        BlackBoxResult(
            best_z=np.asarray(states.best_solution[j]),
            best_dev_acc=best["acc"],
            best_dev_loss=best["loss"],
            final_mean=np.asarray(states.mean[j]),
            history=[h for h in history if h["layer"] == l],
            layer=l,
            **totals,
        )
        for j, l in enumerate(layers)
    ]
    return best["deep"], results
