"""One forward for every model family: dispatch on the config's type.

The service and the methods call `llama.forward(params, cfg, ...)` and
`shared_prefix.forward_shared_prompt(params, cfg, ...)`. A `GemmaConfig` needs the Gemma
decoder instead; these two functions have exactly those signatures and pick the decoder
from the config, so a caller switches families by importing from here.
"""

from __future__ import annotations

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
