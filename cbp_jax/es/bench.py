"""Wall-clock cost of one ES generation (ask + tell), ours/evosax vs pycma, for reuse by scripts.

Every timer runs the same loop: ask a population, score it on a sphere centred away from the
start (a cheap stand-in for the real objective, so the ES has something to adapt to), tell.
JAX strategies go through their jitted evosax-interface `ask`/`tell`, blocked every
generation; pycma is `cma.CMAEvolutionStrategy(x0, sigma0, {'popsize': P, 'verbose': -9,
'seed': seed})` with its default (lazy) eigendecomposition.

A lazy eigendecomposition makes generations uneven (one in `lazy_gap` pays the O(d^3) step),
so a per-generation median would hide it. A timing is therefore the mean over a window of
`n_gens` consecutive generations, and the reported figure the median over `repeats` windows,
after `warmup` generations (which include compilation). On a shared machine, prefer
`compare_steps`, which interleaves the windows of all strategies so that load changes hit
them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.es import make_strategy

PYCMA = "pycma"
_MEAN0 = 1.0  # every coordinate starts at 1: the sphere's optimum (0) is a few sigma0 away
_N_KEYS = 256


@jax.jit
def _sphere(population: jax.Array) -> jax.Array:
    return jnp.sum(jnp.square(population), axis=-1)


def es_stepper(
    strategy_name: str, d: int, P: int, *, sigma0: float = 0.5, seed: int = 0
) -> Callable[[], None]:
    """A function that runs one blocked generation of `make_strategy(strategy_name, P, d)`."""
    es, params = make_strategy(strategy_name, P, d, sigma0)
    key = jax.random.key(seed)
    state = es.init(key, jnp.full((d,), _MEAN0, dtype=jnp.float32), params)
    # Keys made up front so that each generation costs only ask, fitness and tell.
    keys = list(jax.random.split(jax.random.fold_in(key, 1), (_N_KEYS, 2)))
    box = {"state": state, "i": 0}

    def step() -> None:
        k_ask, k_tell = keys[box["i"] % _N_KEYS]
        box["i"] += 1
        population, st = es.ask(k_ask, box["state"], params)
        st, _ = es.tell(k_tell, population, _sphere(population), st, params)
        box["state"] = jax.block_until_ready(st)

    return step


def pycma_stepper(d: int, P: int, *, sigma0: float = 0.5, seed: int = 1) -> Callable[[], None]:
    """A function that runs one generation of pycma's default CMA-ES (needs `pip install cma`)."""
    try:
        import cma
    except ImportError as e:  # optional: only the benchmarks need pycma
        raise ImportError("timing pycma needs pycma: pip install cma") from e
    es = cma.CMAEvolutionStrategy(
        np.full(d, _MEAN0), sigma0, {"popsize": P, "verbose": -9, "seed": seed}
    )

    def step() -> None:
        population = es.ask()
        fitness = np.sum(np.square(np.asarray(population)), axis=-1)
        es.tell(population, fitness.tolist())

    return step


def _window(step: Callable[[], None], n_gens: int) -> float:
    start = time.perf_counter()
    for _ in range(n_gens):
        step()
    return (time.perf_counter() - start) / n_gens


def time_step(step: Callable[[], None], n_gens: int, repeats: int = 3, warmup: int = 3) -> float:
    """Median over `repeats` windows of the mean seconds per generation of `step`."""
    for _ in range(warmup):
        step()
    return statistics.median(_window(step, n_gens) for _ in range(repeats))


def time_es_step(
    strategy_name: str,
    d: int,
    P: int,
    n_gens: int = 30,
    *,
    repeats: int = 3,
    warmup: int = 3,
    sigma0: float = 0.5,
    seed: int = 0,
) -> float:
    """Seconds per generation (ask + sphere fitness + tell) of `make_strategy(strategy_name)`,
    or of pycma's default CMA-ES for the name "pycma"."""
    if strategy_name == PYCMA:
        step = pycma_stepper(d, P, sigma0=sigma0, seed=seed)
    else:
        step = es_stepper(strategy_name, d, P, sigma0=sigma0, seed=seed)
    return time_step(step, n_gens, repeats, warmup)


def compare_steps(
    names: Sequence[str],
    d: int,
    P: int,
    n_gens: int = 30,
    *,
    repeats: int = 5,
    warmup: int = 3,
    sigma0: float = 0.5,
) -> dict[str, list[float]]:
    """Interleaved windows: for each name (a `make_strategy` name or "pycma"), `repeats`
    window means in seconds per generation, taken round-robin across names."""
    steps = {
        name: pycma_stepper(d, P, sigma0=sigma0)
        if name == PYCMA
        else es_stepper(name, d, P, sigma0=sigma0)
        for name in names
    }
    for step in steps.values():
        for _ in range(warmup):
            step()
    windows: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():
            windows[name].append(_window(step, n_gens))
    return windows
