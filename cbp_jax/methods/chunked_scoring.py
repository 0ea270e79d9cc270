"""User-side population scoring, the engine's one scoring path, and one ES generation.

`oracle_scores`: one oracle call over all length buckets. `population_scores(..., chunk=c)`
builds each candidate's payload inside a map over chunks of c candidates, so at most c
payloads and forwards are live (BBT's P x T x D prompts are 1.2 GB at P = 10^4); when c
divides P the chunks are strided, so each spans every device of a "pop" mesh. Every
candidate is scored on its own, so results do not depend on c (tests/test_sweep.py).

`generation`, the engine's unit of work (ask -> payload -> `population_scores` -> loss with
the user's labels -> tell), is what the chunked runner (`blackbox.make_chunk_fn`), BBTv2's
rounds (bbt.py) and the sweeps (`sweep.make_run_fn`) all scan, so a run and the same run in
a sweep take the same steps (tests/test_generation.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cbp_jax.methods.losses import accuracy, class_scores, get_loss


def oracle_scores(oracle, payload, buckets, reduce):
    """Class scores P x B x C (B in bucket order) from ONE oracle call over all buckets.

    buckets: the (tokens, mask, candidates) tuples of `Inputs.buckets` (one candidate set).
    """
    pairs = tuple((tokens, mask) for tokens, mask, _ in buckets)
    return class_scores(oracle(payload, pairs, buckets[0][2]), reduce)


def map_population(fn, x_PxR, chunk: int | None, sharding=None):
    """`vmap(fn)(x_PxR)` computed `chunk` rows at a time (all at once if chunk is None)."""
    p = x_PxR.shape[0]
    if not chunk or chunk >= p:
        return jax.vmap(fn)(x_PxR)
    if p % chunk:
        return jax.lax.map(fn, x_PxR, batch_size=chunk)
    n = p // chunk
    x_NxCxR = x_PxR.reshape(chunk, n, *x_PxR.shape[1:]).swapaxes(0, 1)

    def step(x_CxR):
        if sharding is not None:
            x_CxR = jax.lax.with_sharding_constraint(x_CxR, sharding)
        return jax.vmap(fn)(x_CxR)

    out = jax.lax.map(step, x_NxCxR)
    return jax.tree.map(lambda y: y.swapaxes(0, 1).reshape(p, *y.shape[2:]), out)


def population_scores(
    oracle, param, payload_params, z_PxR, buckets, reduce: str, chunk=None, sharding=None
):
    """Class scores P x B x C of a population, `chunk` candidates at a time (each chunk one
    oracle call over all buckets; P API calls in all, however it is chunked).

    param: a `Parameterization` (payload_fn(payload_params, z_PxR) -> payload); buckets:
    the (tokens, mask, candidates) tuples of `Inputs.buckets`.
    """
    if sharding is not None:
        z_PxR = jax.lax.with_sharding_constraint(z_PxR, sharding)

    def scores(z_QxR):
        return oracle_scores(oracle, param.payload_fn(payload_params, z_QxR), buckets, reduce)

    if not chunk or chunk >= z_PxR.shape[0]:
        return scores(z_PxR)
    return map_population(lambda z_R: scores(z_R[None])[0], z_PxR, chunk, sharding)


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


def evaluate_vectors(
    service, param, z_SxR, inputs, *, buckets=1, reduce="logsumexp", loss="ce", chunk=None
):
    """(loss_S, acc_S) of S vectors z scored as one population on one batch (`inputs`);
    charges S calls first (one per vector, whatever the number of examples)."""
    z_SxR = jnp.asarray(z_SxR, jnp.float32)
    if z_SxR.ndim != 2 or z_SxR.shape[1] != param.num_dims:
        raise ValueError(f"z must be S x {param.num_dims}, got shape {z_SxR.shape}")
    service.reserve(z_SxR.shape[0])
    loss_fn = get_loss(loss)

    @jax.jit
    def run(z, oracle, payload_params, data):
        bucket_data, labels_B = data
        s = population_scores(oracle, param, payload_params, z, bucket_data, reduce, chunk)
        return loss_fn(s, labels_B), accuracy(s, labels_B)

    out = run(z_SxR, service.oracle(param.kind), param.payload_params, inputs.buckets(buckets))
    return tuple(jax.device_get(x) for x in out)
