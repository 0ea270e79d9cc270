"""One ES generation, the engine's unit of work, as one pure jittable function.

ask z_PxR -> payload (the parameterisation, user side) -> candidate scores through the
oracle (one oracle call over all length buckets, or one per chunk of candidates) -> loss
with the user's own labels -> tell. The chunked runner (`blackbox.make_chunk_fn`: a few
generations under `lax.scan` between dev evaluations and checkpoints), BBTv2's rounds (one
generation per layer, bbtv2.py) and the sweeps (`sweep.make_run_fn`: a whole run under one
scan, vmapped over seeds and hyperparameters) all scan this function; only what surrounds
it differs, so a run and the same run inside a sweep take the same steps
(tests/test_generation.py).
"""

from __future__ import annotations

import jax

from cbp_jax.methods.chunked_scoring import population_scores
from cbp_jax.methods.losses import accuracy


def generation(
    es,
    es_params,
    param,
    loss_fn,
    reduce: str,
    carry,
    oracle,
    payload_params,
    data,
    *,
    population_chunk: int | None = None,
    z_sharding=None,
):
    """One generation from carry = (es_state, key): returns ((es_state, key), metrics).

    param: a `Parameterization`; loss_fn(scores_PxBxC, labels_B) -> losses_P; data: the
    train set's (buckets, labels_B) from `Inputs.buckets`; metrics: the population's
    loss_mean, loss_min and acc_max. P API calls, however the population is chunked.
    """
    es_state, key = carry
    key, k_ask, k_tell = jax.random.split(key, 3)
    z_PxR, es_state = es.ask(k_ask, es_state, es_params)
    buckets, labels_B = data
    scores = population_scores(
        oracle, param, payload_params, z_PxR, buckets, reduce, population_chunk, z_sharding
    )
    losses_P = loss_fn(scores, labels_B)
    es_state, _ = es.tell(k_tell, z_PxR, losses_P, es_state, es_params)
    metrics = {
        "loss_mean": losses_P.mean(),
        "loss_min": losses_P.min(),
        "acc_max": accuracy(scores, labels_B).max(),
    }
    return (es_state, key), metrics
