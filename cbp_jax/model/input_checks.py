"""The forward contract's input checks (plain, shared-prompt, key/value prefix).

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


def validate_prefix(cfg, kv_prefix) -> None:
    """A key/value prefix must be {"k_LxTxKxE", "v_LxTxKxE"} of equal shapes."""
    if kv_prefix is None:
        return
    pk, pv = kv_prefix["k_LxTxKxE"], kv_prefix["v_LxTxKxE"]
    want = (cfg.num_layers, cfg.num_kv_heads, cfg.head_dim)
    if pk.ndim != 4 or pk.shape != pv.shape or (pk.shape[0], *pk.shape[2:]) != want:
        raise ValueError(f"prefixes must be L x T x K x E with (L, K, E) = {want}")


def validate_shared_inputs(cfg, tokens_BxS, mask_BxS, prompt_TxD, deep_prompts_LxTxD, candidates):
    """`forward_shared_prompt`'s input checks, each error naming the problem."""
    if prompt_TxD is None and deep_prompts_LxTxD is None:
        raise ValueError("forward_shared_prompt needs prompt_TxD or deep_prompts_LxTxD")
    d, n_l, deep = cfg.hidden_size, cfg.num_layers, deep_prompts_LxTxD
    if prompt_TxD is not None and (prompt_TxD.ndim != 2 or prompt_TxD.shape[1] != d):
        raise ValueError(f"shared prompt must be T x D = T x {d}, got {prompt_TxD.shape}")
    if deep is not None and (deep.ndim != 3 or deep.shape[::2] != (n_l, d)):
        raise ValueError(
            f"shared deep prompts must be L x T x D = {n_l} x T x {d}, got {deep.shape}"
        )
    validate_inputs(cfg, tokens_BxS, mask_BxS, None, None, candidates)
    both = prompt_TxD is not None and deep_prompts_LxTxD is not None
    if both and prompt_TxD.shape[0] != deep_prompts_LxTxD.shape[1]:
        raise ValueError("shallow and deep prompts must have the same length T")
