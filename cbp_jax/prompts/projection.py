"""BBT / BBTv2 random projection of a low-dimensional z to a soft prompt (docs/methods.md, BBT).

p = A z + p0 with z in R^d, A in R^{(T*D) x d}, A ~ N(0, s^2),
s = alpha * std / (sqrt(d) * sigma): BBT's and BBTv2's code, std the word embeddings' for
the input layer and, in BBTv2, each deeper layer's hidden-state std (outliers clipped at
3 sigma); BBT runs alpha = sigma = 1 (its defaults), BBTv2 alpha = sigma = 0.2 (its README),
the same s, with CMA-ES sigma0 = sigma (1.0 and 0.2).
p0 (BBT's code: the embeddings of the natural-language prefix that RoBERTa's vocabulary
ids 1000-1049 decode to, to which A z is added) is provider side and not in this config:
the service's adapters (`service.provider.bbt_adapters`, ids from `service.p0`) add it, so
`project` is called here without it and the user's payload is A z alone.
We store A transposed, d x (T*D), so a population z_PxR projects with one matmul.
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


def projection_std(cfg: ProjectionConfig, embedding_std: float) -> float:
    return cfg.alpha * embedding_std / (cfg.num_dims**0.5 * cfg.sigma)


def random_projection(key, cfg: ProjectionConfig, hidden_size: int, embedding_std: float):
    """A^T as R x (T*D), float32."""
    s = projection_std(cfg, embedding_std)
    return s * jax.random.normal(key, (cfg.num_dims, cfg.prompt_len * hidden_size), jnp.float32)


def project(a_RxTD, z_PxR, hidden_size: int, p0_TxD=None):
    """Soft prompts P x T x D from a population of z (p = A z + p0)."""
    prompts = (z_PxR @ a_RxTD).reshape(z_PxR.shape[0], -1, hidden_size)
    return prompts if p0_TxD is None else prompts + p0_TxD
