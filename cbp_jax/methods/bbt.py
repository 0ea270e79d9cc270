"""BBT and BBTv2 parameterisations for the black-box engine (docs/methods.md, BBT).

BBT: one z in R^d, p = A z + p0, a T x D prefix prompt sent as a "prompt" request; the
user sends A z and the provider adds p0, the embeddings of T real vocabulary tokens
(`service.provider.bbt_adapters`, `service.p0`: by default the words BBT's dataloader puts
before every input, RoBERTa's ids 1000-1049 decoded, in the served model's own tokens), so
z = 0 is a real prompt.
BBTv2: one z_l and one A_l per layer, sent as a "deep_prompt" request, one CMA-ES per
layer stepped in turn every round (bbtv2.py, re-exported here as `run_bbtv2`).
Everything here is user side: A is the user's, built from the provider's public info.
"""

from __future__ import annotations

from cbp_jax.contract import PublicInfo
from cbp_jax.methods.bbtv2 import bbtv2_plan, run_bbtv2
from cbp_jax.methods.blackbox import Parameterization
from cbp_jax.prompts.projection import ProjectionConfig, project, random_projection

__all__ = ["bbt_parameterization", "bbtv2_plan", "run_bbtv2"]


def bbt_parameterization(key, info: PublicInfo, proj: ProjectionConfig) -> Parameterization:
    a = random_projection(key, proj, info.hidden_size, info.embedding_std)
    d = info.hidden_size
    return Parameterization(
        kind="prompt",
        num_dims=proj.num_dims,
        payload_fn=lambda a_RxTD, z: project(a_RxTD, z, d),
        payload_params=a,
    )
