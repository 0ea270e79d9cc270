"""Llama-family decoder: config, pure forward, NNX module, strict loaders, tokenizers."""

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.convert import UnmappedTensorError
from cbp_jax.model.hf_loader import UnsupportedConfigError
from cbp_jax.model.llama import ModelOutput, forward, mean_pooled_embeddings, param_shapes
from cbp_jax.model.module import Llama, init_params
from cbp_jax.model.registry import DEFAULT_MODEL, LoadedModel, load_model

__all__ = [
    "DEFAULT_MODEL",
    "Llama",
    "LlamaConfig",
    "LoadedModel",
    "ModelOutput",
    "UnmappedTensorError",
    "UnsupportedConfigError",
    "forward",
    "init_params",
    "load_model",
    "mean_pooled_embeddings",
    "param_shapes",
]
