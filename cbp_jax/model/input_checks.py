"""The forward contract's input checks, shared by every model family.

`validate_inputs` raises a ValueError naming the problem (shapes, dtypes, prompt and deep
prompt layouts, token and candidate ids out of the vocabulary); value checks run only on
concrete arrays, so the function is safe to call under `jit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def validate_inputs(cfg, tokens_BxS, mask_BxS, prompt_BxTxD, deep_prompts_LxBxTxD, candidates):
    """Raise a ValueError naming the problem; value checks run only outside jit."""
    if tokens_BxS.ndim != 2:
        raise ValueError(f"tokens must be B x S, got shape {tokens_BxS.shape}")
    if not jnp.issubdtype(tokens_BxS.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens_BxS.dtype}")
    b, s = tokens_BxS.shape
    if mask_BxS is not None and mask_BxS.shape != (b, s):
        raise ValueError(f"mask shape {mask_BxS.shape} != tokens shape {(b, s)}")
    d = cfg.hidden_size
    if prompt_BxTxD is not None and (prompt_BxTxD.ndim != 3 or prompt_BxTxD.shape[::2] != (b, d)):
        raise ValueError(f"prompt must be B x T x D = {b} x T x {d}, got {prompt_BxTxD.shape}")
    if deep_prompts_LxBxTxD is not None:
        shape = deep_prompts_LxBxTxD.shape
        if len(shape) != 4 or (shape[0], shape[1], shape[3]) != (cfg.num_layers, b, d):
            raise ValueError(
                f"deep prompts must be L x B x T x D = {cfg.num_layers} x {b} x T x {d}, "
                f"got {shape}"
            )
        if prompt_BxTxD is not None and prompt_BxTxD.shape[1] != shape[2]:
            raise ValueError("shallow and deep prompts must have the same length T")
    for name, ids in (("token", tokens_BxS), ("candidate", candidates)):
        if _concrete(ids):
            ids = np.asarray(ids)
            if ids.size and (ids.min() < 0 or ids.max() >= cfg.vocab_size):
                raise ValueError(
                    f"{name} ids out of range [0, {cfg.vocab_size}): "
                    f"min {ids.min()}, max {ids.max()}"
                )
