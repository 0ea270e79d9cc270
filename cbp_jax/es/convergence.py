"""How far an ES gets on standard test functions: ours, evosax's and pycma's CMA-ES side by side.

`converge(name, function, d, P, generations, seed)` runs one search from x0 = 0.5 (every
coordinate) with sigma0 = 0.5 and returns the objective at the mean after each generation
count in `generations`, plus the seconds per generation. `name` is a `make_strategy` name
("pycma" is ours, "lazy_cma" the CSA variant, "cma" evosax's `CMA_ES`) or `PYCMA_REFERENCE`
for pycma itself (`cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": P, "seed": seed + 1})`,
its defaults: TPA from d = 300 on). JAX strategies run as `lax.scan` over generations between
the reported counts, compiled before the clock starts; pycma runs its own Python loop.

Functions (minimum 0): sphere sum x^2; ellipsoid sum 1e6^((i-1)/(d-1)) x_i^2 (condition 1e6,
axis-parallel); Rosenbrock sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.es import make_strategy

PYCMA_REFERENCE = "pycma (the package)"
X0, SIGMA0 = 0.5, 0.5


def _ellipsoid_scale(d: int, xp):
    return xp.asarray(1e6 ** (np.arange(d) / max(d - 1, 1)))


def objective(function: str, xp=jnp) -> Callable:
    """f(x_PxD) -> f_P for a function name, in `xp` (jax.numpy or numpy)."""
    if function == "sphere":
        return lambda x: xp.sum(x**2, axis=-1)
    if function == "ellipsoid":
        return lambda x: (x**2) @ _ellipsoid_scale(x.shape[-1], xp).astype(x.dtype)
    if function == "rosenbrock":
        return lambda x: xp.sum(
            100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1.0 - x[..., :-1]) ** 2, axis=-1
        )
    raise ValueError(f"unknown test function {function!r}: sphere, ellipsoid or rosenbrock")


def _converge_jax(name, f, d, P, counts, seed):
    es, params = make_strategy(name, P, d, SIGMA0)

    def generation(state, key):
        k_ask, k_tell = jax.random.split(key)
        xs, state = es.ask(k_ask, state, params)
        state, _ = es.tell(k_tell, xs, f(xs), state, params)
        return state, None

    def chunk(state, keys):
        return jax.lax.scan(generation, state, keys)[0]

    state = es.init(jax.random.key(seed), jnp.full((d,), X0), params)
    keys = jax.random.split(jax.random.key(seed + 1), counts[-1])
    out, done, seconds = [], 0, 0.0
    for count in counts:
        step = jax.jit(chunk).lower(state, keys[done:count]).compile()  # compile off the clock
        start = time.perf_counter()
        state = jax.block_until_ready(step(state, keys[done:count]))
        seconds += time.perf_counter() - start
        done = count
        out.append(float(f(state.mean[None])[0]))
    return out, seconds / counts[-1]


def _converge_pycma(f, d, P, counts, seed):
    import cma

    es = cma.CMAEvolutionStrategy(
        np.full(d, X0), SIGMA0, {"popsize": P, "seed": seed + 1, "verbose": -9}
    )
    out, start = [], time.perf_counter()
    for g in range(1, counts[-1] + 1):
        xs = es.ask()
        es.tell(xs, list(f(np.asarray(xs))))
        if g in counts:
            out.append(float(f(es.mean[None])[0]))
    return out, (time.perf_counter() - start) / counts[-1]


def converge(
    name: str, function: str, d: int, P: int, generations: Sequence[int], seed: int = 0
) -> dict:
    """{"f": [f at the mean after each count], "ms_per_generation": float} of one search."""
    counts = sorted(set(int(g) for g in generations))
    if not counts or counts[0] <= 0:
        raise ValueError(f"generations must be positive counts, got {generations!r}")
    if name == PYCMA_REFERENCE:
        fs, sec = _converge_pycma(objective(function, np), d, P, counts, seed)
    else:
        fs, sec = _converge_jax(name, objective(function), d, P, counts, seed)
    return {"f": dict(zip(counts, fs, strict=True)), "ms_per_generation": 1e3 * sec}
