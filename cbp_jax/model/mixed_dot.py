"""Products with low-precision inputs and float32 accumulation, whose backward is as fast.

Every matmul of the forward takes its inputs in the compute dtype (float32, or bfloat16 on
chips with native bf16) and accumulates and returns float32. In bfloat16, JAX's own
transpose of such a product multiplies the float32 cotangent with the bf16 operand, a
mixed-dtype dot that XLA's CPU backend runs in float32 (a bf16 prompt-tuning step ran at 0.72x
the float32 speed, experiments/bench_backward.py). Here the backward rounds the cotangent to
the inputs' dtype first, so both backward products take the forward's bf16-in,
float32-accumulate kernel (gradients leave in the inputs' dtype, as with JAX's own rule).
`mixed_einsum` takes any two-operand einsum whose every index is in the output or both inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def mixed_einsum(spec: str, a, b, dtype):
    """einsum(spec, a, b) with inputs cast to `dtype`, float32 accumulation and output."""
    a, b = a.astype(dtype), b.astype(dtype)
    if jnp.dtype(dtype) == jnp.float32:
        return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)
    return _low_precision_einsum(spec, a, b)


def dense(x, w):
    """x @ w (w: K x N, x: ... x K) with inputs in w's dtype, float32 accumulation and output."""
    lead = x.shape[:-1]
    out = mixed_einsum("mk,kn->mn", x.reshape(-1, x.shape[-1]), w, w.dtype)
    return out.reshape(*lead, w.shape[-1])


def head_product(x, w):
    """Logits x @ w in float32 for a shared head (w: D x C) or a per-row candidate head
    (w: B x D x C, x: B x D or B x S x D), inputs in w's dtype as every other product."""
    if w.ndim == 2:
        return dense(x, w)
    spec = "bsd,bdc->bsc" if x.ndim == 3 else "bd,bdc->bc"
    return mixed_einsum(spec, x, w, w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _low_precision_einsum(spec, a, b):
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def _forward(spec, a, b):
    return _low_precision_einsum(spec, a, b), (a, b)


def _backward(spec, residuals, g):
    a, b = residuals
    (sa, sb), out = spec.split("->")[0].split(","), spec.split("->")[1]
    g = g.astype(a.dtype)  # the cotangent in the inputs' dtype: bf16 x bf16 products below
    da = jnp.einsum(f"{out},{sb}->{sa}", g, b, preferred_element_type=jnp.float32)
    db = jnp.einsum(f"{sa},{out}->{sb}", a, g, preferred_element_type=jnp.float32)
    return da.astype(a.dtype), db.astype(b.dtype)


_low_precision_einsum.defvjp(_forward, _backward)
