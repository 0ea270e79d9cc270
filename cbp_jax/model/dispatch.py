"""One forward for every model family: dispatch on the config's type.

The service and the methods call `llama.forward(params, cfg, ...)` and
`shared_prefix.forward_shared_prompt(params, cfg, ...)`. A `GemmaConfig` needs the Gemma
decoder instead; these two functions have exactly those signatures and pick the decoder
from the config, so a caller switches families by importing from here. `layer_inputs` and
`prompt_scale` do the same for the per-layer hidden states and the factor by which a
prompt row is multiplied on entry (Gemma scales its embedding units by sqrt(D)).
"""

from __future__ import annotations

import numpy as np

from cbp_jax.model import gemma, gemma_shared_prefix, llama, shared_prefix
from cbp_jax.model.gemma_config import GemmaConfig


def forward(params, cfg, tokens_BxS, mask_BxS=None, **kwargs) -> llama.ModelOutput:
    """`llama.forward` or `gemma.forward`, by the type of `cfg`."""
    family = gemma if isinstance(cfg, GemmaConfig) else llama
    return family.forward(params, cfg, tokens_BxS, mask_BxS, **kwargs)


def forward_shared_prompt(params, cfg, tokens_BxS, mask_BxS=None, **kwargs):
    """`shared_prefix.forward_shared_prompt` or `gemma_shared_prefix.forward_shared_prompt`."""
    family = gemma_shared_prefix if isinstance(cfg, GemmaConfig) else shared_prefix
    return family.forward_shared_prompt(params, cfg, tokens_BxS, mask_BxS, **kwargs)


def layer_inputs(params, cfg, tokens_S):
    """`llama.layer_inputs` or `gemma.layer_inputs`: (L x S x D, S x D), residual units."""
    family = gemma if isinstance(cfg, GemmaConfig) else llama
    return family.layer_inputs(params, cfg, tokens_S)


def prompt_scale(cfg) -> float:
    """Residual-stream units per prompt unit: sqrt(D) for Gemma, 1 for the Llama family."""
    return float(np.sqrt(cfg.hidden_size)) if isinstance(cfg, GemmaConfig) else 1.0
