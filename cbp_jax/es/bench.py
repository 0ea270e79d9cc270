"""ES benchmarks, ours/evosax's vs pycma's CMA-ES: the wall-clock cost of one generation, and
how far a search gets on standard test functions.

The name `PYCMA` (timers) or `PYCMA_REFERENCE` (`converge`) selects pycma itself,
`cma.CMAEvolutionStrategy(x0, sigma0, {"popsize": P, "seed": seed, "verbose": -9})` with its
defaults (lazy eigendecomposition, TPA from d = 300 on); any other name is a `make_strategy`
name, run through its jitted `ask`/`tell`.

Timers (`time_es_step`, `compare_steps`) run ask, a sphere centred a few sigma0 from the start
(so the ES has something to adapt to) and tell, blocked every generation. A lazy
eigendecomposition makes generations uneven, so a timing is the mean over a window of
`n_gens` consecutive generations, the figure the median over `repeats` windows after
`warmup` generations (which include compilation). On a shared machine prefer
`compare_steps`, which interleaves the windows of all strategies so load changes hit them alike.

`converge(name, function, d, P, generations, seed)` runs one search from x0 = sigma0 = 0.5 and
returns f at the mean after each generation count and the seconds per generation (JAX: a
`lax.scan` between counts, compiled off the clock; pycma: its own Python loop). Functions
(minimum 0): sphere sum x^2; ellipsoid sum 1e6^((i-1)/(d-1)) x_i^2 (condition 1e6,
axis-parallel); Rosenbrock sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2.
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
PYCMA_REFERENCE = "pycma (the package)"
X0, SIGMA0 = 0.5, 0.5  # `converge`'s start
_MEAN0 = 1.0  # timers: every coordinate starts at 1, the sphere's optimum (0) a few sigma0 away
_N_KEYS = 256


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


_sphere = jax.jit(objective("sphere"))


def pycma_es(d: int, P: int, x0: float, sigma0: float, seed: int):
    """pycma's default CMA-ES (needs `pip install cma`)."""
    try:
        import cma
    except ImportError as e:  # optional: only the benchmarks need pycma
        raise ImportError("benchmarking pycma needs pycma: pip install cma") from e
    return cma.CMAEvolutionStrategy(
        np.full(d, x0), sigma0, {"popsize": P, "seed": seed, "verbose": -9}
    )


def _generation(es, params, f):
    """(state, (key_ask, key_tell)) -> the state after one ask, fitness f and tell."""

    def step(state, keys):
        population, state = es.ask(keys[0], state, params)
        return es.tell(keys[1], population, f(population), state, params)[0]

    return step


def _stepper(name: str, d: int, P: int, sigma0: float, seed: int) -> Callable[[], None]:
    """A function that runs one blocked generation of `name` on the sphere."""
    if name == PYCMA:
        es = pycma_es(d, P, _MEAN0, sigma0, seed)

        def step() -> None:
            population = es.ask()
            es.tell(population, objective("sphere", np)(np.asarray(population)).tolist())

        return step
    es, params = make_strategy(name, P, d, sigma0)
    key = jax.random.key(seed)
    generation = _generation(es, params, _sphere)
    # Keys made up front so that each generation costs only ask, fitness and tell.
    keys = list(jax.random.split(jax.random.fold_in(key, 1), (_N_KEYS, 2)))
    box = {"state": es.init(key, jnp.full((d,), _MEAN0, dtype=jnp.float32), params), "i": 0}

    def step() -> None:
        box["state"] = jax.block_until_ready(generation(box["state"], keys[box["i"] % _N_KEYS]))
        box["i"] += 1

    return step


def _window(step: Callable[[], None], n_gens: int) -> float:
    start = time.perf_counter()
    for _ in range(n_gens):
        step()
    return (time.perf_counter() - start) / n_gens


def compare_steps(
    names: Sequence[str],
    d: int,
    P: int,
    n_gens: int = 30,
    *,
    repeats: int = 5,
    warmup: int = 3,
    sigma0: float = 0.5,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Interleaved windows: for each name (a `make_strategy` name or "pycma"), `repeats`
    window means in seconds per generation (ask + sphere fitness + tell), taken round-robin
    across names."""
    steps = {name: _stepper(name, d, P, sigma0, seed) for name in names}
    for step in steps.values():
        for _ in range(warmup):
            step()
    windows: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name, step in steps.items():
            windows[name].append(_window(step, n_gens))
    return windows


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
    """Median over `repeats` windows of the mean seconds per generation of one name alone."""
    windows = compare_steps(
        [strategy_name], d, P, n_gens, repeats=repeats, warmup=warmup, sigma0=sigma0, seed=seed
    )
    return statistics.median(windows[strategy_name])


def _converge_jax(name, f, d, P, counts, seed):
    es, params = make_strategy(name, P, d, SIGMA0)
    generation = _generation(es, params, f)

    def chunk(state, keys):
        return jax.lax.scan(lambda s, k: (generation(s, jax.random.split(k)), None), state, keys)[0]

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
    es = pycma_es(d, P, X0, SIGMA0, seed + 1)
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
