"""CMA-ES with pycma's step-size rule at large d: two-point adaptation (TPA) on mean-shift samples.

BBT optimises with pycma, which for d >= 300 (`cma.evolution_strategy.TPA_dimension`) uses
two-point step-size adaptation (Hansen 2008; `cma.sigma_adaptation.CMAAdaptSigmaTPA`), not the
cumulative step-size adaptation (CSA) of evosax's `CMA_ES` and `LazyCMA_ES`. With CSA's
constants at d = 500, P = 20 (c_sigma ~ 0.016, d_sigma ~ 1.02) sigma falls by at most a few
percent a generation; TPA decreases it about ten times faster there
(experiments/results/es_vs_pycma.md). As pycma runs it:

- ask: from the second generation on, the first two candidates lie on the line of the last
  mean shift dm = m_t - m_{t-1}, mirrored, y_0 = r dm / sigma, y_1 = -y_0, with r chosen so
  that y_0 has the Mahalanobis length of a random sample,
  r = ||N(0, I)|| / ||C^-1/2 dm / sigma||   (`_random_rescaling_factor_to_mahalanobis_size`).
- tell: z = (#{f < f_1} - #{f < f_0}) / (P - 1) in [-1, 1] (positive: the forward sample won),
  s <- (1 - c) s + c sign(z) |z|^0.5,  sigma <- sigma exp(s / damp),
  c = 0.3, damp = 0.7 + 2 ln d + 2 ln max(1, P - d)   (`initialize_settings`, `update2`).
  The two samples take part in recombination and the covariance update like any other.
- The CSA path p_sigma is still kept, for the h_sigma stall of the rank-one update only.

Everything else is `LazyCMA_ES`, except pycma 4's c_mu (an extra 0.25 in its numerator: a
6% larger covariance learning rate at d = 500, P = 20, which does not matter at these
budgets). `pycma_strategy_class` picks TPA for d >= 300, `LazyCMA_ES` (CSA) below, as pycma.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from evosax.types import Fitness, Population
from flax import struct

from cbp_jax.es.lazy_cma import LazyCMA_ES, extend
from cbp_jax.es.lazy_cma import Params as LazyParams
from cbp_jax.es.lazy_cma import State as LazyState

TPA_DIMENSION = 300  # pycma's `TPA_dimension`: TPA replaces CSA from this d on


@struct.dataclass
class State(LazyState):
    """LazyCMA_ES state plus TPA's smoothed rank signal `tpa_s` and the last mean shift."""

    tpa_s: jax.Array
    mean_shift: jax.Array


@struct.dataclass
class Params(LazyParams):
    """LazyCMA_ES params plus TPA's damping, smoothing and |z| exponent."""

    tpa_damp: jax.Array
    tpa_c: float
    tpa_z_exponent: float


def tpa_damping(num_dims: int, population_size: int) -> float:
    """pycma's TPA damping: 0.7 + 2 ln d + 2 ln max(1, P - d)."""
    d, p = float(num_dims), float(population_size)
    return 0.7 + 2.0 * float(jnp.log(d)) + 2.0 * float(jnp.log(max(1.0, p - d)))


def tpa_rank_signal(weights_P: jax.Array) -> jax.Array:
    """z in [-1, 1] from the shaped fitness (recombination weights, larger = better ranked):
    (number ranked above candidate 1 - number ranked above candidate 0) / (P - 1)."""
    above_0 = jnp.sum(weights_P > weights_P[0])
    above_1 = jnp.sum(weights_P > weights_P[1])
    return (above_1 - above_0).astype(jnp.float32) / (weights_P.shape[0] - 1)


class TPA_CMA_ES(LazyCMA_ES):
    """LazyCMA_ES with pycma's two-point step-size adaptation on mirrored mean-shift samples.

    Same constructor, `init`, `ask` and `tell` as `LazyCMA_ES`; needs population_size >= 2.
    """

    def __init__(self, population_size: int, solution, *args, **kwargs):
        if population_size < 2:
            raise ValueError(f"TPA needs a population of at least 2, got {population_size}")
        super().__init__(population_size, solution, *args, **kwargs)

    @property
    def _default_params(self) -> Params:
        damp = jnp.asarray(tpa_damping(self.num_dims, self.population_size), dtype=jnp.float32)
        return extend(Params, super()._default_params, tpa_damp=damp, tpa_c=0.3, tpa_z_exponent=0.5)

    def _init(self, key: jax.Array, params: Params) -> State:
        base = super()._init(key, params)
        zero = jnp.zeros((self.num_dims,), dtype=base.mean.dtype)
        return extend(State, base, tpa_s=jnp.asarray(0.0, dtype=jnp.float32), mean_shift=zero)

    def _ask(self, key: jax.Array, state: State, params: Params) -> tuple[Population, State]:
        key_sample, key_len = jax.random.split(key)
        population, state = super()._ask(key_sample, state, params)
        # y_0 = r dm / sigma with ||C^-1/2 y_0|| = ||N(0, I)||; y_1 = -y_0.
        dy = state.mean_shift / state.std
        whitened_norm = jnp.linalg.norm((dy @ state.B) / state.D)
        target_norm = jnp.linalg.norm(jax.random.normal(key_len, (self.num_dims,)))
        y0 = dy * target_norm / jnp.maximum(whitened_norm, 1e-30)
        mirrored = jnp.stack([state.mean + state.std * y0, state.mean - state.std * y0])
        has_shift = whitened_norm > 0.0  # generation 0: no mean shift yet, all i.i.d.
        population = population.at[:2].set(jnp.where(has_shift, mirrored, population[:2]))
        return population, state

    def _tell(
        self, key: jax.Array, population: Population, fitness: Fitness, state: State, params: Params
    ) -> State:
        new = super()._tell(key, population, fitness, state, params)  # mean, paths, C (and CSA)
        z = tpa_rank_signal(fitness)
        s = (1.0 - params.tpa_c) * state.tpa_s + params.tpa_c * jnp.sign(z) * jnp.abs(z) ** (
            params.tpa_z_exponent
        )
        std = jnp.clip(state.std * jnp.exp(s / params.tpa_damp), params.std_min, params.std_max)
        return new.replace(std=std, tpa_s=s, mean_shift=new.mean - state.mean)


def pycma_strategy_class(num_dims: int) -> type:
    """The CMA-ES pycma runs by default at this d: TPA from d = 300 on, CSA below."""
    return TPA_CMA_ES if num_dims >= TPA_DIMENSION else LazyCMA_ES
