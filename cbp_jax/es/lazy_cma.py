"""CMA-ES with a lazily updated eigendecomposition, in evosax 0.3's interface (usage as for
every strategy of `cbp_jax.es`).

evosax's `CMA_ES` runs `jnp.linalg.eigh` on the d x d covariance in every `ask`, an O(d^3)
step that dominates a generation for d in the hundreds or more (at d=500, population 20 it
was about 2x slower per generation than pycma). This strategy keeps evosax's CMA-ES math
(parameters, weights, paths, update equations) and recomputes B and D (C = B diag(D^2) B^T)
only every `params.lazy_gap` generations, pycma's rule (gap = max(1, 1 / (c_1 + c_mu) / d /
10)); in between it samples from, and whitens with, the last B and D while C is updated
every generation (c_1 + c_mu is small whenever d is large, so C moves little within a gap).
The decomposition sits under `jax.lax.cond`, so skipped generations do not pay for it; under
`jax.vmap` with a batched state `cond` becomes a select that evaluates both branches
(results stay correct, the saving is lost).

The O(P d^2) work is also cheaper than evosax's (see the comments in `_ask` and `_tell`);
evosax's clipping, symmetrisation and diagonal loading of C are kept.

Sampling uses the symmetric square root, y = B D B^T z, by default: the same distribution as
evosax's y = B D z, but continuous in C. B is only defined up to rotations inside
near-degenerate eigenspaces (C starts at I), so with B D z a last-bit change in C (a sharded
reduction, another BLAS) gives another sample path; B D B^T z does not, which is what makes a
population sharded over devices reproduce the unsharded run. With `params.lazy_gap` 1 and
`symmetric_sampling=False` the updates match evosax's `CMA_ES` up to rounding.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from evosax.algorithms.distribution_based import cma_es as _cma
from evosax.types import Fitness, Population
from flax import struct


@struct.dataclass
class State(_cma.State):
    """evosax CMA-ES state plus the generation at which B and D were last computed."""

    last_eigen_update: jax.Array


@struct.dataclass
class Params(_cma.Params):
    """evosax CMA-ES params plus `lazy_gap`: generations between eigendecompositions."""

    lazy_gap: jax.Array


def extend(cls, base, **fields):
    """An instance of `cls` (a subclass of `base`'s flax dataclass) with `base`'s fields and
    `fields` added."""
    return cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)}, **fields)


def pycma_lazy_gap(c_1: jax.Array, c_mu: jax.Array, num_dims: int) -> jax.Array:
    """pycma's default gap in generations between eigendecompositions, at least 1."""
    return jnp.maximum(1.0, 1.0 / (c_1 + c_mu + 1e-23) / num_dims / 10.0)


class LazyCMA_ES(_cma.CMA_ES):
    """CMA-ES (evosax's equations) with the eigendecomposition of C done every `lazy_gap` gens.

    Constructor, `default_params`, `init`, `ask` and `tell` are those of evosax's `CMA_ES`;
    `Params` adds `lazy_gap` (float, generations) and `State` adds `last_eigen_update`.
    """

    def __init__(
        self, population_size: int, solution, *args, symmetric_sampling: bool = True, **kwargs
    ):
        super().__init__(population_size, solution, *args, **kwargs)
        self.symmetric_sampling = symmetric_sampling

    @property
    def _default_params(self) -> Params:
        base = super()._default_params
        gap = pycma_lazy_gap(base.c_1, base.c_mu, self.num_dims)
        return extend(Params, base, lazy_gap=jnp.asarray(gap, dtype=jnp.float32))

    def _init(self, key: jax.Array, params: Params) -> State:
        # B = I, D = 1 are the exact decomposition of the initial C = I.
        base = super()._init(key, params)
        return extend(State, base, last_eigen_update=jnp.asarray(0, dtype=jnp.int32))

    def _ask(self, key: jax.Array, state: State, params: Params) -> tuple[Population, State]:
        generation = jnp.asarray(state.generation_counter, dtype=jnp.int32)
        stale = (generation - state.last_eigen_update).astype(jnp.float32) >= params.lazy_gap

        # Only B, D and the counter go through the cond: routing C through it too makes XLA
        # copy (and transpose, for LAPACK's column-major layout) d x d buffers every call.
        def decompose(C, B, D, last):
            _, B, D = _cma.eigen_decomposition(C)  # evosax's: symmetrise, clip, load, eigh
            return B, D, generation

        def keep(C, B, D, last):
            return B, D, last

        B, D, last = jax.lax.cond(
            stale, decompose, keep, state.C, state.B, state.D, state.last_eigen_update
        )

        z = jax.random.normal(key, (self.population_size, self.num_dims))  # Eq. (38)
        if self.symmetric_sampling:  # y = C^1/2 z with the symmetric root B D B^T
            y = ((z @ B) * D) @ B.T
        else:  # Eq. (39), y = B D z, without forming diag(D)
            y = (z * D) @ B.T
        population = state.mean + state.std * y  # Eq. (40)
        return population, state.replace(B=B, D=D, last_eigen_update=last)

    def _tell(
        self, key: jax.Array, population: Population, fitness: Fitness, state: State, params: Params
    ) -> State:
        # `fitness` is already shaped into the recombination weights (negative for the worst).
        mean, y_k, y_w = self.update_mean(population, fitness, state.mean, state.std, params)

        # Whitened steps D^-1 B^T y_k, one P x d x d matmul; C^-1/2 y = B (D^-1 B^T y).
        z_k = (y_k @ state.B) / state.D
        positive = jnp.where(fitness < 0.0, 0.0, fitness)
        C_inv_sqrt_y_w = state.B @ (positive @ z_k)

        # Cumulative step-length adaptation
        p_std = self.update_p_std(state.p_std, C_inv_sqrt_y_w, params)
        norm_p_std = jnp.linalg.norm(p_std)
        std = self.update_std(state.std, norm_p_std, params)

        # Covariance matrix adaptation
        h_std = self.h_std(norm_p_std, state.generation_counter + 1, params)
        p_c = self.update_p_c(state.p_c, h_std, y_w, params)
        delta_h_std = self.delta_h_std(h_std, params)

        # Eq. (46): negative weights rescaled by d / ||C^-1/2 y_k||^2 (= ||z_k||^2).
        w_o = fitness * jnp.where(
            fitness >= 0,
            1.0,
            self.num_dims / jnp.clip(jnp.sum(jnp.square(z_k), axis=-1), min=1e-8),
        )
        # sum_k w_o[k] y_k y_k^T as one matmul whose (i, j) and (j, i) entries are sums of the
        # same products, so C stays symmetric without a d x d transpose.
        scaled = jnp.sqrt(jnp.abs(w_o))[:, None] * y_k
        rank_mu = scaled.T @ (jnp.sign(w_o)[:, None] * scaled)
        C = self.update_C(state.C, delta_h_std, jnp.outer(p_c, p_c), rank_mu, params)
        # evosax clips C this way before each decomposition; here it costs no extra pass.
        on_diag = jnp.arange(self.num_dims)[:, None] == jnp.arange(self.num_dims)[None, :]
        C = jnp.minimum(jnp.where(on_diag, jnp.maximum(C, 0.0), C), 1e8)

        return state.replace(mean=mean, std=std, p_std=p_std, p_c=p_c, C=C)
