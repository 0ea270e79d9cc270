"""The jittable oracle handle of `serve.client.RemoteService`: one `jax.pure_callback` per
oracle call, so a compiled engine loop scores its population over HTTP unchanged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@jax.tree_util.register_pytree_node_class
class RemoteOracle:
    """Jittable handle: (payload, buckets, candidates) -> P x (sum of B) x C x W log-probs
    in bucket order, computed by the server through `jax.pure_callback` as one request
    (P calls). It holds no arrays."""

    def __init__(self, client, kind: str):
        self._client, self.kind = client, kind

    def tree_flatten(self):
        return (), (self._client, self.kind)

    @classmethod
    def tree_unflatten(cls, static, _children):
        return cls(*static)

    def __call__(self, payload, buckets, candidates_CxW):
        if not isinstance(buckets, tuple | list) or not buckets:
            raise ValueError("buckets must be a non-empty tuple of (tokens_BxS, mask_BxS) pairs")
        for i, pair in enumerate(buckets):
            if len(pair) != 2 or pair[0].ndim != 2 or pair[0].shape != pair[1].shape:
                raise ValueError(f"bucket {i} must be a (tokens_BxS, mask_BxS) pair of one shape")
        width = max(t.shape[1] for t, _ in buckets)
        left = [((0, 0), (width - t.shape[1], 0)) for t, _ in buckets]  # mask 0: padding
        pairs = list(zip(buckets, left, strict=True))
        tokens_BxS = jnp.concatenate([jnp.pad(t, w) for (t, _), w in pairs])
        mask_BxS = jnp.concatenate([jnp.pad(m, w) for (_, m), w in pairs])
        axis = 1 if self.kind == "deep_prompt" else 0
        p = 1 if payload is None else payload.shape[axis]
        c, w = candidates_CxW.shape
        out = jax.ShapeDtypeStruct((p, tokens_BxS.shape[0], c, w), jnp.float32)
        arrays = (tokens_BxS, mask_BxS, candidates_CxW)
        if payload is not None:
            arrays = (payload.astype(jnp.float32), *arrays)
        fn = functools.partial(self._client._oracle_call, self.kind)
        return jax.pure_callback(fn, out, *arrays, vmap_method="sequential")

    def __repr__(self):
        return f"RemoteOracle(kind={self.kind!r}, url={self._client.url!r})"
