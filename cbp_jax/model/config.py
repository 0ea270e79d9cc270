"""Configuration of the decoder: one frozen dataclass for every family (Llama, SmolLM2, Qwen2,
Gemma 3), validated on construction so that a bad checkpoint fails at load time with a
message naming the field, not deep inside a jitted forward pass. The defaults are Llama's (so
`LlamaConfig` is the same class); `gemma3_config` is the Gemma 3 preset.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
ACTIVATIONS = ("silu", "gelu_tanh")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Shapes and numerics of a decoder-only transformer (Llama's defaults).

    Attributes:
      vocab_size, hidden_size, intermediate_size, num_layers: V, D, F (gated-MLP width), L.
      num_heads, num_kv_heads, head_dim: H query heads, K key/value heads (grouped-query
        attention, H % K == 0), E per-head width (D == H * E is not required).
      rope_theta: RoPE base frequency (of the global layers).
      rms_norm_eps: epsilon of every RMSNorm.
      tie_embeddings: the output head is the transposed token embedding.
      qkv_bias: q/k/v projections carry a bias (Qwen2).
      dtype: compute and parameter dtype name: "float32" or "bfloat16".
      norm_offset: RMSNorms scale by (norm_offset + w) (Gemma stores weights around 0: 1.0).
      qk_norm: q and k get their own RMSNorm per head before RoPE (params q_norm, k_norm).
      post_norms: the attention and MLP outputs are normalised again before the residual
        add (params post_attn_norm, post_mlp_norm).
      activation: the gated MLP's activation, "silu" (SwiGLU) or "gelu_tanh" (GeGLU).
      sliding_layers: () for all-global, else one bool per layer, True for a local layer.
      sliding_window: a local layer's query sees keys at most this many positions back
        (itself included: query position - key position < sliding_window).
      rope_local_theta: RoPE base of the local layers.
      rope_scaling_factor: linear RoPE scaling of the global layers (positions / factor).
      query_pre_attn_scalar: scores are scaled by its inverse square root (None: head_dim).
      embed_scale: token embeddings and prompts are multiplied by sqrt(D) on entry (in the
        parameter dtype, as transformers does), so prompts are in embedding-table units.
      final_logit_softcapping: logits -> cap * tanh(logits / cap) when set.
      bos_token_id: when set, the forward puts this token before the (prompt and) text of
        every row, as Gemma was trained; callers pass text without special tokens.
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
    norm_offset: float = 0.0
    qk_norm: bool = False
    post_norms: bool = False
    activation: str = "silu"
    sliding_layers: tuple[bool, ...] = ()
    sliding_window: int = 4096
    rope_local_theta: float = 10_000.0
    rope_scaling_factor: float = 1.0
    query_pre_attn_scalar: float | None = None
    embed_scale: bool = False
    final_logit_softcapping: float | None = None
    bos_token_id: int | None = None

    def __post_init__(self):
        name = type(self).__name__
        ints = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads")
        for key in (*ints, "num_kv_heads", "head_dim", "sliding_window"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}.{key} must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"{name}.num_heads ({self.num_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"{name}.head_dim must be even for RoPE, got {self.head_dim}")
        layers = self.sliding_layers
        if not isinstance(layers, tuple) or len(layers) not in (0, self.num_layers):
            raise ValueError(
                f"{name}.sliding_layers must be () or a tuple of {self.num_layers} bools, "
                f"got {layers!r}"
            )
        if any(not isinstance(x, bool) for x in layers):
            raise ValueError(f"{name}.sliding_layers must hold bools")
        positive = ("rope_theta", "rope_local_theta", "rope_scaling_factor", "rms_norm_eps")
        for key in (*positive, "query_pre_attn_scalar", "final_logit_softcapping"):
            value = getattr(self, key)
            if (value is not None or key in positive) and not value > 0:
                raise ValueError(f"{name}.{key} must be positive, got {value!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{name}.activation must be one of {ACTIVATIONS}")
        if self.bos_token_id is not None and not 0 <= self.bos_token_id < self.vocab_size:
            raise ValueError(f"{name}.bos_token_id {self.bos_token_id} is out of range")
        if self.dtype not in _DTYPES:
            raise ValueError(f"{name}.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

    @property
    def jnp_dtype(self):
        return _DTYPES[self.dtype]

    @property
    def layer_kinds(self) -> tuple[int, ...]:
        """Per layer, 0 for global attention and 1 for a local (sliding-window) layer."""
        return tuple(int(x) for x in self.sliding_layers) or (0,) * self.num_layers

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def matmul_flops_per_token(self, seq_len: int) -> int:
        """Forward FLOPs per token of the decoder stack (no head), dense attention over seq_len;
        local layers see at most sliding_window keys."""
        d, f, hd = self.hidden_size, self.intermediate_size, self.head_dim
        proj = d * hd * (2 * self.num_heads + 2 * self.num_kv_heads)  # q, o, k, v
        mlp = 3 * d * f
        total = 0
        for local in self.layer_kinds:
            keys = min(seq_len, self.sliding_window) if local else seq_len
            total += proj + mlp + 2 * self.num_heads * hd * keys  # scores and weighted sum
        return 2 * total


LlamaConfig = DecoderConfig  # the defaults are the Llama family's (Llama, SmolLM2, Qwen2)


# Gemma 3's fields (the shapes and `sliding_layers` are the model's): norm offset 1, QK-norm,
# post-attention/MLP norms, GeGLU, sliding-window layers with their own RoPE base, sqrt(D)
# embedding scale. Logit soft-cap and BOS are set where a checkpoint states them.
GEMMA3_FIELDS = dict(
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    norm_offset=1.0,
    qk_norm=True,
    post_norms=True,
    activation="gelu_tanh",
    sliding_window=512,
    query_pre_attn_scalar=256.0,
    embed_scale=True,
)


def gemma3_config(*shapes, sliding_layers: tuple[bool, ...], **fields) -> DecoderConfig:
    """A Gemma 3 text decoder's config: DecoderConfig's seven shape fields (by position or
    name), one bool per layer (True: local), and `GEMMA3_FIELDS` unless `fields` say otherwise."""
    if not isinstance(sliding_layers, tuple) or not sliding_layers:
        raise ValueError(f"Gemma 3 needs sliding_layers, one bool per layer: {sliding_layers!r}")
    return DecoderConfig(*shapes, sliding_layers=sliding_layers, **(GEMMA3_FIELDS | fields))


def sliding_pattern(num_layers: int, every: int) -> tuple[bool, ...]:
    """Gemma 3's layout: every `every`-th layer is global, the others local."""
    return tuple(bool((i + 1) % every) for i in range(num_layers))
