"""Gemma 3 GGUF files (`general.architecture = gemma3`): strict config and tensor names.

Facts this follows, checked against transformers' GGUF loader and llama.cpp's converter:
- llama.cpp adds 1 to every Gemma RMSNorm weight when converting (its norm scales by w,
  transformers' by 1 + w); transformers' `Gemma2TensorProcessor` (used for gemma3) subtracts
  1 from every `*norm.weight` again. `NORM_SHIFT` does the same here.
- q/k rows are not permuted (Gemma uses NEOX-style RoPE in llama.cpp).
- The file does not state the local/global layout or the attention scale: llama.cpp hard-codes
  every 6th layer global and 1 / sqrt(head_dim) (1 / sqrt(hidden / heads) for the 62-layer
  27B); transformers defaults to the same layout and query_pre_attn_scalar 256. The local
  RoPE base is 10k unless `rope.freq_base_swa` says otherwise.
"""

from __future__ import annotations

import gguf

from cbp_jax.model.config import DecoderConfig, gemma3_config, sliding_pattern
from cbp_jax.model.convert import UnsupportedConfigError

NORM_SHIFT = 1.0
_FIELDS = {
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.layer_norm_rms_epsilon",
    "attention.key_length",
    "attention.value_length",
    "attention.sliding_window",
    "rope.freq_base",
    "rope.freq_base_swa",
    "rope.dimension_count",
    "rope.scaling.type",
    "rope.scaling.factor",
    "final_logit_softcapping",
    "vocab_size",
}
TENSOR_NAMES = {  # GGUF block tensor -> HF name where it differs from the llama arch's
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
GLOBAL_EVERY = 6


def config_from_gguf_gemma(reader: gguf.GGUFReader, dtype: str = "float32") -> DecoderConfig:
    values = {}
    for key, field in reader.fields.items():
        if key.startswith("gemma3."):
            sub = key[len("gemma3.") :]
            if sub not in _FIELDS:
                raise UnsupportedConfigError(f"unsupported GGUF config field {key!r}")
            values[sub] = field.contents()
    n_layers, d = int(values["block_count"]), int(values["embedding_length"])
    n_heads = int(values["attention.head_count"])
    head_dim = int(values.get("attention.key_length", d // n_heads))
    if int(values.get("attention.value_length", head_dim)) != head_dim:
        raise UnsupportedConfigError("unsupported GGUF gemma3 value_length != key_length")
    factor = 1.0
    if "rope.scaling.type" in values:
        if values["rope.scaling.type"] not in ("linear", "none"):
            raise UnsupportedConfigError(
                f"unsupported GGUF gemma3.rope.scaling.type={values['rope.scaling.type']!r}"
            )
        factor = float(values.get("rope.scaling.factor", 1.0))
    if "vocab_size" in values:
        vocab = int(values["vocab_size"])
    elif "tokenizer.ggml.tokens" in reader.fields:
        vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    else:
        raise UnsupportedConfigError("GGUF file states no vocabulary size (gemma3.vocab_size)")
    bos = None
    add_bos = reader.fields.get("tokenizer.ggml.add_bos_token")
    if (
        add_bos is not None
        and add_bos.contents()
        and "tokenizer.ggml.bos_token_id" in reader.fields
    ):
        bos = int(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    scalar = d / n_heads if n_layers == 62 else head_dim  # llama.cpp's rule (27B differs)

    def optional(name):
        return float(values[name]) if name in values else None

    return gemma3_config(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=int(values["feed_forward_length"]),
        num_layers=n_layers,
        num_heads=n_heads,
        num_kv_heads=int(values.get("attention.head_count_kv", n_heads)),
        head_dim=head_dim,
        sliding_layers=sliding_pattern(n_layers, GLOBAL_EVERY),
        sliding_window=int(values.get("attention.sliding_window", 4096)),
        rope_theta=float(values.get("rope.freq_base", 1_000_000.0)),
        rope_local_theta=float(values.get("rope.freq_base_swa", 10_000.0)),
        rope_scaling_factor=factor,
        query_pre_attn_scalar=float(scalar),
        rms_norm_eps=float(values.get("attention.layer_norm_rms_epsilon", 1e-6)),
        final_logit_softcapping=optional("final_logit_softcapping"),
        bos_token_id=bos,
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
        dtype=dtype,
    )
