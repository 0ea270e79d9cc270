"""The decoder (Llama, SmolLM2, Qwen2, Gemma 3 as fields of one config): its config, pure
forward, strict loaders and tokenizers."""

from cbp_jax.model.block import init_params, mean_pooled_embeddings, param_shapes
from cbp_jax.model.config import DecoderConfig, LlamaConfig, gemma3_config
from cbp_jax.model.convert import UnmappedTensorError, UnsupportedConfigError
from cbp_jax.model.decoder import ModelOutput, forward
from cbp_jax.model.registry import DEFAULT_MODEL, LoadedModel, load_model

__all__ = [
    "DEFAULT_MODEL",
    "DecoderConfig",
    "LlamaConfig",
    "LoadedModel",
    "ModelOutput",
    "UnmappedTensorError",
    "UnsupportedConfigError",
    "forward",
    "gemma3_config",
    "init_params",
    "load_model",
    "mean_pooled_embeddings",
    "param_shapes",
]
