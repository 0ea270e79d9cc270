"""Evolution strategies for black-box prompt tuning, all in evosax 0.3's interface; the
package's one strategy registry. `make_strategy(name, population_size, num_dims, sigma0)`
returns `(es, params)` for

- "pycma" (DEFAULT_STRATEGY): what pycma, BBT's optimizer, runs by default at this d:
  `TPA_CMA_ES` for d >= 300, `LazyCMA_ES` (CSA) below (at d = 500, P = 20 CSA's step size
  falls far more slowly than pycma's: experiments/results/es_vs_pycma.md).
- "tpa_cma": `TPA_CMA_ES` at any d.
- "lazy_cma": `LazyCMA_ES`, the default before 2026-12-07, kept as the named option every
  earlier record ran with.
- "cma": evosax's `CMA_ES` (eigendecomposition every generation), kept as the reference.
- "sep_cma": evosax's `Sep_CMA_ES` (diagonal covariance, O(P d) per generation), the choice
  for large d (thousands of dimensions and up) where a d x d covariance is too costly. It
  cannot learn correlations: on a rotated ellipsoid (d=100, condition 1e3) it stalled near
  1e-2 after 6000 generations where both full variants reached 1e-6 in ~3500.

`sweep_strategy` adds evosax's "lm_ma" (LM-MA-ES) and "snes" (separable NES) for sweeps of
large populations. All minimise; NaN fitness ranks worst. `init/ask/tell` are jitted with the
strategy object static, so build `es` and `params` outside `jax.jit` and pass them in.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from evosax.algorithms import CMA_ES, LM_MA_ES, SNES, Sep_CMA_ES

from cbp_jax.es.lazy_cma import LazyCMA_ES, pycma_lazy_gap
from cbp_jax.es.tpa_cma import TPA_CMA_ES, pycma_strategy_class

DEFAULT_STRATEGY = "pycma"
STRATEGIES: dict[str, type] = {
    "pycma": TPA_CMA_ES,  # resolved by d in `strategy_class`
    "tpa_cma": TPA_CMA_ES,
    "lazy_cma": LazyCMA_ES,
    "cma": CMA_ES,
    "sep_cma": Sep_CMA_ES,
}
# Sweeps only (large populations, O(P d) a generation), with evosax's own default params.
EXTRA_STRATEGIES: dict[str, type] = {"lm_ma": LM_MA_ES, "snes": SNES}

__all__ = [
    "CMA_ES",
    "DEFAULT_STRATEGY",
    "EXTRA_STRATEGIES",
    "STRATEGIES",
    "LazyCMA_ES",
    "Sep_CMA_ES",
    "TPA_CMA_ES",
    "make_strategy",
    "pycma_lazy_gap",
    "strategy_class",
    "sweep_strategy",
]


def strategy_class(name: str, num_dims: int) -> type:
    """The evosax-interface class behind a `make_strategy` name at this dimension."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown ES strategy {name!r}; expected one of {sorted(STRATEGIES)}")
    return pycma_strategy_class(num_dims) if name == "pycma" else STRATEGIES[name]


def make_strategy(name: str, population_size: int, num_dims: int, sigma0: float = 1.0):
    """Build an evosax-style strategy over a flat `num_dims` vector and its default params.

    `sigma0` becomes `params.std_init`, the initial step size. Returns `(es, params)`; use
    `es.init(key, mean, params)`, `es.ask(key, state, params)` and
    `es.tell(key, population, fitness, state, params)`.
    """
    if isinstance(population_size, bool) or not isinstance(population_size, int):
        raise TypeError(f"population_size must be an int, got {population_size!r}")
    if population_size < 2:
        raise ValueError(f"population_size must be at least 2, got {population_size}")
    if isinstance(num_dims, bool) or not isinstance(num_dims, int) or num_dims < 1:
        raise ValueError(f"num_dims must be a positive int, got {num_dims!r}")
    cls = strategy_class(name, num_dims)
    try:
        sigma = float(sigma0)
    except (TypeError, ValueError):
        raise TypeError(f"sigma0 must be a number, got {sigma0!r}") from None
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma0 must be a positive finite number, got {sigma0!r}")
    es = cls(population_size=population_size, solution=jnp.zeros(num_dims))
    params = es.default_params.replace(std_init=jnp.asarray(sigma, dtype=jnp.float32))
    return es, params


def sweep_strategy(name: str, population: int, num_dims: int):
    """(es, params) for a `make_strategy` name (sigma0 1; sweeps set `std_init` per run) or
    one of EXTRA_STRATEGIES (evosax's own default params)."""
    if name in STRATEGIES:
        return make_strategy(name, population, num_dims, 1.0)
    if name in EXTRA_STRATEGIES:
        es = EXTRA_STRATEGIES[name](population_size=population, solution=jnp.zeros(num_dims))
        return es, es.default_params
    known = sorted(STRATEGIES) + sorted(EXTRA_STRATEGIES)
    raise ValueError(f"unknown strategy {name!r}; expected one of {known}")
