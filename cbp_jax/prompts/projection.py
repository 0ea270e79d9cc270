"""BBT / BBTv2 random projection of a low-dimensional z to a soft prompt (docs/methods.md, BBT).

p = A z + p0, A ~ N(0, s^2), s = alpha * std / (sqrt(d) * sigma) as in BBT's and BBTv2's code:
std the word embeddings' for the input layer and, in BBTv2, each deeper layer's hidden-state
std (outliers clipped at 3 sigma); BBT runs alpha = sigma = 1, BBTv2 alpha = sigma = 0.2 (the
same s), with CMA-ES sigma0 = sigma. p0 (BBT: the embeddings of the prefix that RoBERTa's ids
1000-1049 decode to) is provider side: the service's adapters (`service.provider.bbt_adapters`,
ids from `service.p0`) add it, so the user's payload is A z alone. A is stored transposed,
d x (T*D), so a population z_PxR projects with one matmul.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ProjectionConfig:
    num_dims: int = 500  # d
    prompt_len: int = 50  # T
    alpha: float = 0.2
    sigma: float = 0.2  # CMA-ES sigma0 the scale is matched to

    def __post_init__(self):
        if self.num_dims <= 0 or self.prompt_len <= 0:
            raise ValueError("projection num_dims and prompt_len must be positive")
        if self.alpha <= 0 or self.sigma <= 0:
            raise ValueError("projection alpha and sigma must be positive")


def random_projection(key, cfg: ProjectionConfig, hidden_size: int, embedding_std: float):
    """A^T as R x (T*D), float32, with A ~ N(0, s^2), s = alpha * std / (sqrt(d) * sigma)."""
    s = cfg.alpha * embedding_std / (cfg.num_dims**0.5 * cfg.sigma)
    return s * jax.random.normal(key, (cfg.num_dims, cfg.prompt_len * hidden_size), jnp.float32)


def project(a_RxTD, z_PxR, hidden_size: int, p0_TxD=None):
    """Soft prompts P x T x D from a population of z (p = A z + p0)."""
    prompts = (z_PxR @ a_RxTD).reshape(z_PxR.shape[0], -1, hidden_size)
    return prompts if p0_TxD is None else prompts + p0_TxD
