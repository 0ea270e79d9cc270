"""LazyCMA_ES: convergence, determinism, jit/scan/vmap, parity with evosax CMA_ES, NaN ranking."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms import CMA_ES, Sep_CMA_ES

from cbp_jax.es import STRATEGIES, TPA_CMA_ES, LazyCMA_ES, make_strategy, pycma_lazy_gap
from cbp_jax.es.lazy_cma import State

# Most tests share one small configuration, so that its compiled functions are reused.
D_SMALL, P_SMALL = 12, 8


def sphere(x):
    return jnp.sum(jnp.square(x), axis=-1)


@functools.cache  # one function object per problem, so compiled runs are reused
def rotated_ellipsoid(d, cond=1e3, seed=0):
    rot, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(seed), (d, d)))
    scales = cond ** (jnp.arange(d) / (d - 1))

    def f(x):
        return jnp.sum(scales * jnp.square(x @ rot.T), axis=-1)

    return f


def run(es, params, fn, key, mean, n_gens):
    """n_gens generations of ask/fn/tell under jit + lax.scan; final state, best per gen."""
    return _runner(es, fn, n_gens)(key, mean, params)


@functools.cache
def _runner(es, fn, n_gens):
    @jax.jit
    def go(key, mean, params):
        k_init, k_gens = jax.random.split(key)
        state = es.init(k_init, mean, params)

        def body(state, key):
            k_ask, k_tell = jax.random.split(key)
            population, state = es.ask(k_ask, state, params)
            state, metrics = es.tell(k_tell, population, fn(population), state, params)
            return state, metrics["best_fitness"]

        return jax.lax.scan(body, state, jax.random.split(k_gens, n_gens))

    return go


@functools.cache
def _cached_strategy(name, d, P, sigma0):
    return make_strategy(name, P, d, sigma0)


def lazy_es(d, P, sigma0=0.5, lazy_gap=None):
    es, params = _cached_strategy("lazy_cma", d, P, sigma0)
    if lazy_gap is not None:
        params = params.replace(lazy_gap=jnp.asarray(lazy_gap, dtype=jnp.float32))
    return es, params


@pytest.mark.parametrize("lazy_gap", [None, 4.0])
def test_minimizes_sphere(lazy_gap):
    es, params = lazy_es(D_SMALL, P_SMALL, lazy_gap=lazy_gap)
    state, best = run(es, params, sphere, jax.random.key(0), jnp.ones(D_SMALL), 300)
    assert float(best[-1]) < 1e-8
    assert float(sphere(state.mean)) < 1e-6
    assert np.all(np.diff(np.asarray(best)) <= 0)  # best-so-far never gets worse


@pytest.mark.parametrize("lazy_gap", [None, 5.0])
def test_minimizes_rotated_ellipsoid_like_evosax_cma(lazy_gap):
    d, P, gens = 30, 14, 900
    f = rotated_ellipsoid(d)
    es, params = lazy_es(d, P, lazy_gap=lazy_gap)
    ref, ref_params = _cached_strategy("cma", d, P, 0.5)
    assert float(f(jnp.ones(d))) > 100.0
    ours, theirs = [], []
    for key in jax.random.split(jax.random.key(1), 2):
        state, best = run(es, params, f, key, jnp.ones(d), gens)
        ours.append(float(best[-1]))
        theirs.append(float(run(ref, ref_params, f, key, jnp.ones(d), gens)[1][-1]))
    assert max(ours) < 1e-6 and max(theirs) < 1e-6, (ours, theirs)
    # Same order of magnitude of final error as evosax's every-generation CMA-ES.
    assert abs(np.median(np.log10(ours)) - np.median(np.log10(theirs))) < 2.0, (ours, theirs)
    # C learned the rotated scaling: its condition number approaches the problem's 1e3.
    eig = np.linalg.eigvalsh(np.asarray(state.C, dtype=np.float64))
    assert eig.max() / eig.min() > 100.0


def test_same_key_same_result_and_other_key_differs():
    f = rotated_ellipsoid(D_SMALL)
    es, params = lazy_es(D_SMALL, P_SMALL, lazy_gap=3.0)
    s1, b1 = run(es, params, f, jax.random.key(7), jnp.ones(D_SMALL), 60)
    s2, b2 = run(es, params, f, jax.random.key(7), jnp.ones(D_SMALL), 60)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(b1), np.asarray(b2))
    s3, _ = run(es, params, f, jax.random.key(8), jnp.ones(D_SMALL), 60)
    assert not np.array_equal(np.asarray(s1.mean), np.asarray(s3.mean))


def test_decomposes_every_lazy_gap_generations_and_keeps_c_symmetric():
    d, P = D_SMALL, P_SMALL
    es, params = lazy_es(d, P, lazy_gap=3.0)
    state = es.init(jax.random.key(0), jnp.ones(d), params)
    key = jax.random.key(1)
    lasts, Bs = [], []
    for _ in range(12):
        key, k_ask, k_tell = jax.random.split(key, 3)
        population, state = es.ask(k_ask, state, params)
        lasts.append(int(state.last_eigen_update))
        Bs.append(np.asarray(state.B))
        state, _ = es.tell(k_tell, population, sphere(population), state, params)
    assert lasts == [0, 0, 0, 3, 3, 3, 6, 6, 6, 9, 9, 9]
    for g in range(1, 12):
        assert np.array_equal(Bs[g], Bs[g - 1]) == (lasts[g] == lasts[g - 1])
    C = np.asarray(state.C)
    assert np.abs(C - C.T).max() <= 1e-6 * np.abs(C).max()
    # B, D decompose the C they were computed from.
    population, state = es.ask(key, state.replace(last_eigen_update=jnp.int32(-100)), params)
    C, B, D = (np.asarray(a, dtype=np.float64) for a in (state.C, state.B, state.D))
    np.testing.assert_allclose(B @ np.diag(D**2) @ B.T, C, atol=1e-5 * np.abs(C).max())


def _as_lazy(state) -> State:
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    # -1 with lazy_gap = 1 forces a decomposition in the next ask, as evosax always does.
    return State(**fields, last_eigen_update=jnp.asarray(-1, dtype=jnp.int32))


def test_gap_one_matches_evosax_cma_step_by_step():
    d, P = D_SMALL, P_SMALL
    f = rotated_ellipsoid(d, seed=3)
    ref, ref_params = _cached_strategy("cma", d, P, 0.5)
    _, params = lazy_es(d, P, lazy_gap=1.0)
    es = LazyCMA_ES(population_size=P, solution=jnp.zeros(d), symmetric_sampling=False)
    assert set(ref_params.__dataclass_fields__) < set(params.__dataclass_fields__)
    state = ref.init(jax.random.key(0), jnp.ones(d), ref_params)
    key = jax.random.key(2)
    for _ in range(15):
        key, k_ask, k_tell = jax.random.split(key, 3)
        pop_ref, ask_ref = ref.ask(k_ask, state, ref_params)
        pop, ask_ours = es.ask(k_ask, _as_lazy(state), params)
        np.testing.assert_allclose(pop, pop_ref, rtol=1e-5, atol=1e-5)
        fitness = f(pop_ref)
        new_ref, _ = ref.tell(k_tell, pop_ref, fitness, ask_ref, ref_params)
        new_ours, _ = es.tell(k_tell, pop_ref, fitness, ask_ours, params)
        for name in ("mean", "std", "p_std", "p_c", "C"):
            np.testing.assert_allclose(
                getattr(new_ours, name), getattr(new_ref, name), rtol=1e-4, atol=1e-6
            )
        state = new_ref
    # The compared run went somewhere: C is far from its initial identity.
    assert np.abs(np.asarray(state.C) - np.eye(d)).max() > 0.1


def test_nan_fitness_ranks_worst():
    d, P = D_SMALL, P_SMALL
    es, params = lazy_es(d, P)
    state = es.init(jax.random.key(0), jnp.ones(d), params)
    population, state = es.ask(jax.random.key(1), state, params)
    fitness = sphere(population)
    worst = int(jnp.argmax(fitness))
    best = int(jnp.argmin(fitness))
    nan_fitness = fitness.at[best].set(jnp.nan)
    big_fitness = fitness.at[best].set(fitness[worst] + 1.0)
    s_nan, m_nan = es.tell(jax.random.key(2), population, nan_fitness, state, params)
    s_big, _ = es.tell(jax.random.key(2), population, big_fitness, state, params)
    for name in ("mean", "std", "p_std", "p_c", "C"):
        np.testing.assert_allclose(getattr(s_nan, name), getattr(s_big, name), rtol=1e-6)
    assert np.isfinite(float(s_nan.best_fitness))
    assert not np.array_equal(np.asarray(s_nan.best_solution), np.asarray(population[best]))
    # All failed: the distribution must stay finite.
    s_all, _ = es.tell(jax.random.key(2), population, jnp.full(P, jnp.nan), state, params)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in (s_all.mean, s_all.C, s_all.std))


def test_vmap_over_batched_states_matches_single_runs():
    """Batched states turn the lazy cond into a select; results must not change.

    Eigenvectors are only defined up to sign (and rotation within near-equal eigenvalues), so
    batched and single eigh may sample different but equally distributed populations. Compare
    what is well defined: C, D, and a tell of the same population (C^-1/2 is unique).
    """
    d, P, n = D_SMALL, P_SMALL, 3
    es, params = lazy_es(d, P, lazy_gap=3.0)
    f = rotated_ellipsoid(d)
    keys = jax.random.split(jax.random.key(3), n)
    runs = [run(es, params, f, k, jnp.ones(d), 60)[0] for k in keys]
    states = jax.tree.map(lambda *xs: jnp.stack(xs), *runs)
    # Force a decomposition for some members only, so the cond's predicate is batched.
    states = states.replace(last_eigen_update=jnp.array([-100, 9, -100], dtype=jnp.int32))
    pops, asked = jax.jit(jax.vmap(es.ask, in_axes=(0, 0, None)))(keys, states, params)
    told, _ = jax.jit(jax.vmap(es.tell, in_axes=(0, 0, 0, 0, None)))(
        keys, pops, jax.vmap(f)(pops), asked, params
    )
    for i in range(n):
        state_i = jax.tree.map(lambda x, i=i: x[i], states)
        _, asked_i = es.ask(keys[i], state_i, params)
        assert int(asked_i.last_eigen_update) == int(asked.last_eigen_update[i])
        np.testing.assert_allclose(asked.D[i], asked_i.D, rtol=1e-4)
        np.testing.assert_allclose(asked.C[i], asked_i.C, rtol=1e-5, atol=1e-7)
        told_i, _ = es.tell(keys[i], pops[i], f(pops[i]), asked_i, params)
        for name in ("mean", "std", "p_std", "p_c", "C"):
            np.testing.assert_allclose(
                getattr(told, name)[i], getattr(told_i, name), rtol=1e-4, atol=1e-6
            )


def test_default_lazy_gap_follows_pycma_rule():
    es, params = make_strategy("lazy_cma", 20, 500, 0.5)
    expected = 1.0 / (float(params.c_1) + float(params.c_mu)) / 500 / 10
    assert float(params.lazy_gap) == pytest.approx(expected, rel=1e-5)
    assert 4.0 < float(params.lazy_gap) < 6.0  # pycma: 4.70 at (500, 20)
    # Large populations make C move fast: decompose every generation.
    _, params = make_strategy("lazy_cma", 200, 500, 0.5)
    assert float(params.lazy_gap) == 1.0
    assert float(pycma_lazy_gap(jnp.float32(0.1), jnp.float32(0.1), 10)) == 1.0


def test_make_strategy():
    assert set(STRATEGIES) == {"pycma", "tpa_cma", "cma", "lazy_cma", "sep_cma"}
    named = (("cma", CMA_ES), ("lazy_cma", LazyCMA_ES), ("sep_cma", Sep_CMA_ES))
    named += (("tpa_cma", TPA_CMA_ES), ("pycma", LazyCMA_ES))  # pycma at d = 5: CSA
    for name, cls in named:
        es, params = make_strategy(name, 6, 5, sigma0=0.25)
        assert type(es) is cls and es.population_size == 6 and es.num_dims == 5
        assert float(params.std_init) == pytest.approx(0.25)
        # Shapes only (no compilation): init and ask accept the params.
        state = jax.eval_shape(es.init, jax.random.key(0), jnp.zeros(5), params)
        population, _ = jax.eval_shape(es.ask, jax.random.key(1), state, params)
        assert population.shape == (6, 5)
    with pytest.raises(ValueError, match="unknown ES strategy 'cmaes'.*lazy_cma"):
        make_strategy("cmaes", 6, 5)
    for bad in (dict(population_size=1), dict(num_dims=0), dict(sigma0=0.0)):
        kwargs = dict(name="cma", population_size=6, num_dims=5, sigma0=1.0) | bad
        with pytest.raises(ValueError):
            make_strategy(**kwargs)
    with pytest.raises(ValueError):
        make_strategy("cma", 6, 5, sigma0=math.inf)
    with pytest.raises(TypeError):
        make_strategy("cma", 6.0, 5)
