"""User-side population scoring, the engine's one scoring path: `oracle_scores` (one oracle
call over all length buckets) and `population_scores` (payload and oracle call per chunk of
candidates; the whole population in one call when unchunked).

The service already maps its model forward over the population in chunks
(`ScoringService(population_chunk=...)`), but the payload the user sends is built for the
whole population first: BBT's P x T x D soft prompts are 1.2 GB at P = 10^4, T = 50,
D = 576. `population_scores(..., chunk=c)` instead builds each candidate's payload inside
a map over chunks of c candidates, so at most c payloads and c forwards are live.

When c divides P the chunks are strided (chunk j holds candidates i * P/c + j): with the
population sharded over a "pop" mesh axis each chunk then spans every device, and each
device scores its own candidates. Otherwise `lax.map(batch_size=c)` is used (contiguous
chunks; correct, but with a mesh the devices no longer split a chunk). Every candidate is
scored on its own either way, so results do not depend on c (tests/test_sweep.py).
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
