"""Flax NNX face of the decoder: a stateful module over the same params pytree.

The math lives in `cbp_jax.model.llama.forward`, a pure function. This module exists for
users who like `model(tokens)` and for random initialisation; at every jit/vmap/grad/scan
boundary split it to a plain dict with `model.params()` and call `forward` directly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.llama import ModelOutput, Params, forward, param_shapes


class _Group(nnx.Module):
    """A named group of parameters (the stacked decoder layers)."""

    def __init__(self, arrays: dict[str, jax.Array]):
        for name, value in arrays.items():
            setattr(self, name, nnx.Param(value))


class Llama(nnx.Module):
    """Llama-family decoder; parameters mirror `param_shapes(cfg)` exactly."""

    def __init__(
        self, cfg: LlamaConfig, *, rngs: nnx.Rngs | None = None, params: Params | None = None
    ):
        self.cfg = cfg
        if params is None:
            if rngs is None:
                raise ValueError("Llama needs either rngs (random init) or params (loaded weights)")
            params = init_params(cfg, rngs.params())
        self.layers = _Group(params["layers"])
        self.embed = nnx.Param(params["embed"])
        self.final_norm = nnx.Param(params["final_norm"])
        if "lm_head" in params:
            self.lm_head = nnx.Param(params["lm_head"])

    def params(self) -> Params:
        """The plain params pytree for `forward`."""
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def __call__(self, tokens_BxS, mask_BxS=None, **kwargs) -> ModelOutput:
        return forward(self.params(), self.cfg, tokens_BxS, mask_BxS, **kwargs)


def init_params(cfg: LlamaConfig, key: jax.Array, std: float = 0.02) -> Params:
    """Random params (normal weights, unit norm gains, zero biases) in cfg.dtype."""
    shapes = param_shapes(cfg)
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
    paths = [
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_flatten_with_path(
            shapes, is_leaf=lambda x: isinstance(x, tuple)
        )[0]
    ]
    keys = jax.random.split(key, len(leaves))
    arrays = []
    for path, shape, k in zip(paths, leaves, keys, strict=True):
        if "norm" in path:
            arrays.append(jnp.ones(shape, cfg.jnp_dtype))
        elif "b_qkv" in path:
            arrays.append(jnp.zeros(shape, cfg.jnp_dtype))
        else:
            arrays.append((std * jax.random.normal(k, shape)).astype(cfg.jnp_dtype))
    return jax.tree.unflatten(treedef, arrays)
