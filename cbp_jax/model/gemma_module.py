"""Flax NNX face of the Gemma 3 decoder, and its random initialisation.

As `module.Llama` for Llama: the math is the pure `gemma.forward`; this module holds the
same params pytree as `nnx.Param`s for users who like `model(tokens)`. Split it back to a
plain dict with `model.params()` at jit/vmap/grad boundaries.
"""

from __future__ import annotations

import jax
from flax import nnx

from cbp_jax.model.gemma import forward, param_shapes
from cbp_jax.model.gemma_config import GemmaConfig
from cbp_jax.model.llama import ModelOutput, Params
from cbp_jax.model.module import _Group


class Gemma(nnx.Module):
    """Gemma 3 decoder; parameters mirror `gemma.param_shapes(cfg)` exactly."""

    def __init__(
        self, cfg: GemmaConfig, *, rngs: nnx.Rngs | None = None, params: Params | None = None
    ):
        self.cfg = cfg
        if params is None:
            if rngs is None:
                raise ValueError("Gemma needs either rngs (random init) or params (loaded weights)")
            params = init_gemma_params(cfg, rngs.params())
        self.layers = _Group(params["layers"])
        self.embed = nnx.Param(params["embed"])
        self.final_norm = nnx.Param(params["final_norm"])
        if "lm_head" in params:
            self.lm_head = nnx.Param(params["lm_head"])

    def params(self) -> Params:
        """The plain params pytree for `gemma.forward`."""
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def __call__(self, tokens_BxS, mask_BxS=None, **kwargs) -> ModelOutput:
        return forward(self.params(), self.cfg, tokens_BxS, mask_BxS, **kwargs)


def init_gemma_params(
    cfg: GemmaConfig, key: jax.Array, std: float = 0.02, norm_std: float = 0.0
) -> Params:
    """Random params in cfg.dtype: normal weights; norm weights normal(0, norm_std) around
    zero (Gemma norms scale by 1 + w, so zero is the identity scale)."""
    shapes = param_shapes(cfg)
    is_shape = lambda x: isinstance(x, tuple)  # noqa: E731
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes, is_leaf=is_shape)
    keys = jax.random.split(key, len(flat))
    arrays = []
    for (path, shape), k in zip(flat, keys, strict=True):
        scale = norm_std if "norm" in jax.tree_util.keystr(path) else std
        arrays.append((scale * jax.random.normal(k, shape)).astype(cfg.jnp_dtype))
    return jax.tree.unflatten(treedef, arrays)


__all__ = ["Gemma", "init_gemma_params"]
