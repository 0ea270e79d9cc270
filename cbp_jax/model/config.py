"""Configuration of a Llama-family decoder (Llama, SmolLM2, Qwen2).

One frozen dataclass describes every architecture the loaders accept. It is validated on
construction so that a bad checkpoint fails at load time with a message naming the field,
not deep inside a jitted forward pass.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class DecoderConfigMixin:
    """What every decoder config (Llama, Gemma) derives the same way from its fields."""

    def check_dtype(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(
                f"{type(self).__name__}.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}"
            )

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def q_per_kv(self) -> int:
        return self.num_heads // self.num_kv_heads

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class LlamaConfig(DecoderConfigMixin):
    """Shapes and numerics of a decoder-only transformer.

    Attributes:
      vocab_size: V, number of token ids.
      hidden_size: D, residual width.
      intermediate_size: F, SwiGLU hidden width.
      num_layers: L, number of decoder blocks (scanned).
      num_heads: H, query heads.
      num_kv_heads: K, key/value heads (grouped-query attention; H % K == 0).
      head_dim: per-head width (D == H * head_dim for Llama, not required).
      rope_theta: RoPE base frequency.
      rms_norm_eps: epsilon of RMSNorm.
      tie_embeddings: the output head is the transposed token embedding.
      qkv_bias: q/k/v projections carry a bias (Qwen2).
      dtype: compute and parameter dtype name: "float32" or "bfloat16".
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    qkv_bias: bool = False
    dtype: str = "float32"

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"LlamaConfig.{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"LlamaConfig.num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig.head_dim must be even for RoPE, got {self.head_dim}")
        if not self.rope_theta > 0 or not self.rms_norm_eps > 0:
            raise ValueError("LlamaConfig.rope_theta and rms_norm_eps must be positive")
        self.check_dtype()

    def matmul_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token of the decoder stack (no head), dense attention over seq_len."""
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        proj = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads)  # q, o, k, v
        mlp = 3 * d * f
        attn = 2 * self.num_heads * hd * seq_len  # scores and weighted sum
        return 2 * self.num_layers * (proj + mlp + attn)
