"""d_chi-privacy text privatization (user side), after RAPT (Li, Tan, Liu, arXiv 2305.06212).

Each token x_t with embedding e(x_t) in R^D is replaced by

    x'_t = argmin_{w in W} || e(w) - (e(x_t) + z) ||_2,    z = l * v,
    l ~ Gamma(shape=D, scale=1/eta),   v ~ Uniform(unit sphere S^{D-1}),

which satisfies d_chi-privacy: P(M(x)=y) / P(M(x')=y) <= exp(eta * ||e(x) - e(x')||).
The noise density is p(z) ∝ exp(-eta ||z||); its norm is Gamma(D, 1/eta), so E||z|| = D/eta.
Larger eta = less noise; eta = inf is the identity.

The nearest-neighbour search runs over the whole vocabulary W in chunks of `chunk` rows
(`lax.fori_loop`, keeping the running min and argmin), using
||y - e||^2 = ||y||^2 - 2 y.e + ||e||^2 with matmuls (||y||^2 is constant per row and
dropped). Padding and protected (special) ids are left unchanged and never produced.

Peak extra memory for a block of N tokens (N = B*S up to `max_tokens`) is
4 * (N*chunk + 2*chunk*D + 2*N*D) bytes (distances, embedding slice and its square, noise and
noisy embeddings): ≈ 191 MB for the default model (V=49152, D=576) at the defaults
(chunk 4096, N 8192), against 4*N*V ≈ 1.6 GB for one brute-force block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import encode, left_pad


def check_eta(eta) -> None:
    """Raise a ValueError unless eta is a positive number (inf allowed); skipped under jit."""
    if isinstance(eta, jax.core.Tracer):
        return
    value = float(np.asarray(eta))
    if math.isnan(value) or value <= 0:
        raise ValueError(f"eta must be > 0 (larger = less noise, inf = identity), got {eta!r}")


def sample_noise(key, shape_N, dim: int, eta):
    """Noise vectors z = l * v of shape (*shape_N, dim): l ~ Gamma(dim, 1/eta), v on S^{dim-1}."""
    check_eta(eta)
    shape = (shape_N,) if isinstance(shape_N, int) else tuple(shape_N)
    key_norm, key_dir = jax.random.split(key)
    norm_N = jax.random.gamma(key_norm, float(dim), shape, jnp.float32) / eta
    v_NxD = jax.random.normal(key_dir, (*shape, dim), jnp.float32)
    v_NxD = v_NxD / jnp.linalg.norm(v_NxD, axis=-1, keepdims=True)
    return norm_N[..., None] * v_NxD


@functools.partial(jax.jit, static_argnames="chunk")
def nearest_ids(y_NxD, embed_VxD, banned_V, *, chunk: int = 4096):
    """argmin_v ||y_n - e_v||^2 over all V rows, `chunk` rows at a time; banned rows skipped.

    The last chunk is shifted back to end at V (rows seen twice keep their first argmin),
    so no padded copy of the embedding is made.
    """
    v, _ = embed_VxD.shape
    c = min(chunk, v)
    y = y_NxD.astype(jnp.float32)
    n = y.shape[0]

    def body(i, carry):
        best_d, best_i = carry
        start = jnp.minimum(i * c, v - c)
        e_CxD = jax.lax.dynamic_slice_in_dim(embed_VxD, start, c).astype(jnp.float32)
        ban_C = jax.lax.dynamic_slice_in_dim(banned_V, start, c)
        d_NxC = jnp.sum(e_CxD * e_CxD, -1) - 2.0 * jnp.matmul(
            y, e_CxD.T, precision=jax.lax.Precision.HIGHEST
        )
        d_NxC = jnp.where(ban_C, jnp.inf, d_NxC)
        j_N = jnp.argmin(d_NxC, axis=1)
        d_N = jnp.take_along_axis(d_NxC, j_N[:, None], 1)[:, 0]
        better = d_N < best_d
        return jnp.where(better, d_N, best_d), jnp.where(better, start + j_N, best_i)

    init = (jnp.full((n,), jnp.inf, jnp.float32), jnp.zeros((n,), jnp.int32))
    return jax.lax.fori_loop(0, -(-v // c), body, init)[1].astype(jnp.int32)


@functools.partial(jax.jit, static_argnames="chunk")
def _privatize(key, embed_VxD, ids_BxS, mask_BxS, eta, protected_P, chunk):
    b, s = ids_BxS.shape
    v, d = embed_VxD.shape
    x_NxD = jnp.take(embed_VxD, ids_BxS.reshape(-1), axis=0).astype(jnp.float32)
    y_NxD = x_NxD + sample_noise(key, b * s, d, eta)
    banned_V = jnp.isin(jnp.arange(v), protected_P)
    new_BxS = nearest_ids(y_NxD, embed_VxD, banned_V, chunk=chunk).reshape(b, s)
    keep = (mask_BxS == 0) | jnp.isin(ids_BxS, protected_P) | jnp.isinf(eta)
    return jnp.where(keep, ids_BxS, new_BxS)


def privatize_ids(
    key,
    embed_VxD,
    ids_BxS,
    mask_BxS=None,
    eta=1.0,
    *,
    protected_ids: Sequence[int] = (),
    chunk: int = 4096,
    max_tokens: int = 8192,
):
    """Privatize token ids B x S; padding (mask 0) and `protected_ids` stay as they are.

    eta = inf returns the input exactly. Inputs with more than `max_tokens` tokens run in
    blocks of rows, block i keyed by fold_in(key, i), so N <= max(max_tokens, S) in the
    memory bound of the module docstring.
    """
    check_eta(eta)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ids = jnp.asarray(ids_BxS)
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"ids must be a B x S integer array, got {ids.dtype} {ids.shape}")
    v = embed_VxD.shape[0]
    if not isinstance(ids, jax.core.Tracer) and ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ValueError(f"token ids must lie in [0, {v}), got [{ids.min()}, {ids.max()}]")
    mask = jnp.ones(ids.shape, jnp.int32) if mask_BxS is None else jnp.asarray(mask_BxS)
    if mask.shape != ids.shape:
        raise ValueError(f"mask shape {mask.shape} != ids shape {ids.shape}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    protected = jnp.asarray(list(protected_ids) or [-1], jnp.int32)  # -1 matches nothing
    eta = jnp.asarray(eta, jnp.float32)
    ids = ids.astype(jnp.int32)
    b, s = ids.shape
    if b * s <= max_tokens:
        return _privatize(key, embed_VxD, ids, mask, eta, protected, chunk)
    rows = max(1, max_tokens // max(s, 1))
    blocks = [
        (jax.random.fold_in(key, i), slice(r, r + rows)) for i, r in enumerate(range(0, b, rows))
    ]
    return jnp.concatenate(
        [_privatize(k, embed_VxD, ids[sl], mask[sl], eta, protected, chunk) for k, sl in blocks]
    )


def privatize_text(
    key, tokenizer, embed_VxD, texts: Sequence[str], eta, *, chunk: int = 4096
) -> list[str]:
    """Tokenize, privatize (special tokens protected) and decode each text."""
    check_eta(eta)
    if isinstance(texts, str) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError("cannot privatize an empty text")
    seqs = encode(tokenizer, texts)
    if any(not s for s in seqs):
        raise ValueError("a text tokenizes to nothing")
    tokens_BxS, mask_BxS = left_pad(seqs, tokenizer.pad_token_id or 0)
    special = tuple(tokenizer.all_special_ids)
    out = privatize_ids(
        key, embed_VxD, tokens_BxS, mask_BxS, eta, protected_ids=special, chunk=chunk
    )
    out_BxS = np.asarray(out)
    return [tokenizer.decode(row[m > 0].tolist()) for row, m in zip(out_BxS, mask_BxS, strict=True)]
