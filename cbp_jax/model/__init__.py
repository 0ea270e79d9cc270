"""Decoders (Llama family; Gemma 3): configs, pure forwards, NNX modules, strict loaders,
tokenizers. `forward` here dispatches on the config type (`dispatch.forward`)."""

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.convert import UnmappedTensorError, UnsupportedConfigError
from cbp_jax.model.dispatch import forward
from cbp_jax.model.gemma_config import GemmaConfig
from cbp_jax.model.gemma_module import Gemma, init_gemma_params
from cbp_jax.model.llama import ModelOutput, mean_pooled_embeddings, param_shapes
from cbp_jax.model.module import Llama, init_params
from cbp_jax.model.registry import DEFAULT_MODEL, LoadedModel, load_model

__all__ = [
    "DEFAULT_MODEL",
    "Gemma",
    "GemmaConfig",
    "Llama",
    "LlamaConfig",
    "LoadedModel",
    "ModelOutput",
    "UnmappedTensorError",
    "UnsupportedConfigError",
    "forward",
    "init_gemma_params",
    "init_params",
    "load_model",
    "mean_pooled_embeddings",
    "param_shapes",
]
