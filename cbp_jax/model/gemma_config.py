"""Configuration of a Gemma 3 text decoder.

A frozen dataclass like `LlamaConfig`, validated on construction, with the fields Gemma 3
has that Llama does not: the per-layer attention kind (local sliding window or global),
two RoPE bases, the attention scale `query_pre_attn_scalar`, optional logit soft-capping
and an optional BOS token the forward puts before every sequence. It is a separate type
on purpose: `cbp_jax.model.llama.forward` must not run Gemma params by accident.
"""

from __future__ import annotations

import dataclasses

from cbp_jax.model.config import DecoderConfigMixin


@dataclasses.dataclass(frozen=True)
class GemmaConfig(DecoderConfigMixin):
    """Shapes and numerics of a Gemma 3 decoder.

    Attributes:
      vocab_size, hidden_size, intermediate_size, num_layers, num_heads, num_kv_heads,
        head_dim: as in `LlamaConfig` (intermediate_size is the GeGLU width).
      sliding_layers: one bool per layer, True for a local sliding-window layer.
      sliding_window: a local layer's query sees keys at most this many positions back
        (itself included: query position - key position < sliding_window).
      rope_theta: RoPE base of the global layers.
      rope_local_theta: RoPE base of the local layers.
      rope_scaling_factor: linear RoPE scaling of the global layers (positions / factor).
      query_pre_attn_scalar: attention scores are scaled by its inverse square root.
      rms_norm_eps: epsilon of every RMSNorm (weights stored zero-centred: scale 1 + w).
      final_logit_softcapping: logits -> cap * tanh(logits / cap) when set.
      bos_token_id: when set, the forward puts this token before the (prompt and) text of
        every row, as Gemma was trained; callers pass text without special tokens.
      tie_embeddings: the output head is the transposed token embedding.
      dtype: compute and parameter dtype name: "float32" or "bfloat16".
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    sliding_layers: tuple[bool, ...]
    sliding_window: int = 512
    rope_theta: float = 1_000_000.0
    rope_local_theta: float = 10_000.0
    rope_scaling_factor: float = 1.0
    query_pre_attn_scalar: float = 256.0
    rms_norm_eps: float = 1e-6
    final_logit_softcapping: float | None = None
    bos_token_id: int | None = None
    tie_embeddings: bool = True
    dtype: str = "float32"

    family = "gemma3"
    qkv_bias = False  # read by memory estimates shared with Llama configs

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "sliding_window",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GemmaConfig.{name} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"GemmaConfig.num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"GemmaConfig.head_dim must be even for RoPE, got {self.head_dim}")
        layers = self.sliding_layers
        if not isinstance(layers, tuple) or len(layers) != self.num_layers:
            raise ValueError(
                f"GemmaConfig.sliding_layers must be a tuple of {self.num_layers} bools, "
                f"got {self.sliding_layers!r}"
            )
        if any(not isinstance(x, bool) for x in self.sliding_layers):
            raise ValueError("GemmaConfig.sliding_layers must hold bools")
        for name in (
            "rope_theta",
            "rope_local_theta",
            "rope_scaling_factor",
            "query_pre_attn_scalar",
            "rms_norm_eps",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"GemmaConfig.{name} must be positive, got {getattr(self, name)}")
        cap = self.final_logit_softcapping
        if cap is not None and not cap > 0:
            raise ValueError(
                f"GemmaConfig.final_logit_softcapping must be None or > 0, got {cap!r}"
            )
        if self.bos_token_id is not None and not 0 <= self.bos_token_id < self.vocab_size:
            raise ValueError(f"GemmaConfig.bos_token_id {self.bos_token_id} is out of range")
        self.check_dtype()

    def matmul_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token of the decoder stack (no head); local layers see at most
        sliding_window keys."""
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        proj = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads)
        mlp = 3 * d * f
        total = 0
        for sliding in self.sliding_layers:
            keys = min(seq_len, self.sliding_window) if sliding else seq_len
            total += proj + mlp + 2 * self.num_heads * hd * keys
        return 2 * total


def sliding_pattern(num_layers: int, every: int) -> tuple[bool, ...]:
    """Gemma 3's layout: every `every`-th layer is global, the others local."""
    return tuple(bool((i + 1) % every) for i in range(num_layers))
