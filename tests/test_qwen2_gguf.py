"""Qwen2 GGUF (q/k/v biases, no q/k permutation, k-quants) and every accepted quant type.

Dequantization: tiny tensors written with gguf.GGUFWriter and read back by our loader's
`dequantize_tensor` equal the originals within each type's quantization error (types
gguf can quantize) or equal closed-form values (k-quant blocks built by hand).
Parity: a tiny random Qwen2ForCausalLM is written to a GGUF with mixed types (Q8_0, Q4_K,
Q5_K, Q6_K, Q5_0, F16, BF16, F32); transformers loads that file in float64, and our
float32 forward from the same file matches its logits to 1e-4 on a left-padded batch.
"""

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model.decoder import forward
from cbp_jax.model.gguf_loader import UnsupportedQuantError, dequantize_tensor, load_gguf
from tests.gguf_quant import Q, constant_kquant, encode
from tests.helpers import assert_parity

ROUND_TRIP = {Q.F32: 0.0, Q.F16: 1e-3, Q.BF16: 8e-3, Q.Q8_0: 2e-2, Q.Q5_0: 0.13, Q.Q4_0: 0.25}


def _write(path, tensors: dict, arch="qwen2"):
    w = gguf.GGUFWriter(str(path), arch)
    for name, (data, kind) in tensors.items():
        w.add_tensor(name, data, raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _read(path) -> dict:
    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


@pytest.mark.parametrize("kind", list(ROUND_TRIP))
def test_quantizable_types_round_trip(tmp_path, kind):
    x = np.random.default_rng(0).normal(size=(3, 256)).astype(np.float32)
    _write(tmp_path / "t.gguf", {"t": (encode(None, kind, x), kind)})
    got = dequantize_tensor(_read(tmp_path / "t.gguf")["t"])
    assert got.shape == x.shape and got.dtype == np.float32
    err = np.abs(got - x).max()
    assert err <= ROUND_TRIP[kind]
    assert kind == Q.F32 or err > 0  # really stored quantized


@pytest.mark.parametrize("kind", [Q.Q4_K, Q.Q5_K, Q.Q6_K])
def test_kquant_blocks_decode_to_known_values(tmp_path, kind):
    raw, expected = constant_kquant(kind, 2, 512)
    _write(tmp_path / "k.gguf", {"k": (raw, kind)})
    got = dequantize_tensor(_read(tmp_path / "k.gguf")["k"])
    assert got.shape == (2, 512)
    np.testing.assert_array_equal(got, expected)


def test_unknown_quant_type_names_tensor_and_type(tmp_path):
    raw = np.zeros((2, 84), np.uint8)  # two Q2_K blocks: a type we do not accept
    _write(tmp_path / "q2.gguf", {"blk.0.attn_q.weight": (raw, Q.Q2_K)})
    with pytest.raises(UnsupportedQuantError, match=r"blk\.0\.attn_q\.weight.*Q2_K"):
        dequantize_tensor(_read(tmp_path / "q2.gguf")["blk.0.attn_q.weight"])


D, F, HEADS, KV, V, L = 256, 512, 4, 2, 97, 2
TYPES = {  # tensor kind -> quant type written (ffn_down alternates per layer)
    "token_embd": Q.Q8_0,
    "attn_q": Q.Q4_K,
    "attn_k": Q.Q5_K,
    "attn_v": Q.Q6_K,
    "attn_output": Q.Q5_0,
    "ffn_gate": Q.F16,
    "ffn_up": Q.BF16,
    "ffn_down": (Q.Q4_K, Q.Q6_K),
}
HF = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}


def _tiny_qwen2_gguf(path):
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=V,
        hidden_size=D,
        intermediate_size=F,
        num_hidden_layers=L,
        num_attention_heads=HEADS,
        num_key_value_heads=KV,
        rope_theta=1000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )
    sd = {k: v.numpy() for k, v in transformers.Qwen2ForCausalLM(config).state_dict().items()}
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_block_count(L)
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_rope_freq_base(1000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(V)
    emb = rng.normal(0, 0.1, sd["model.embed_tokens.weight"].shape)
    w.add_tensor("token_embd.weight", encode(rng, Q.Q8_0, emb), raw_dtype=Q.Q8_0)
    w.add_tensor("output_norm.weight", 1 + 0.3 * rng.normal(size=D).astype(np.float32))
    for i in range(L):
        for kind, hf in HF.items():
            shape = sd[f"model.layers.{i}.{hf}.weight"].shape
            if kind.endswith("norm"):
                w.add_tensor(
                    f"blk.{i}.{kind}.weight", 1 + 0.3 * rng.normal(size=shape).astype(np.float32)
                )
                continue
            qt = TYPES[kind][i] if isinstance(TYPES[kind], tuple) else TYPES[kind]
            data = encode(rng, qt, rng.normal(0, 0.06, shape))
            w.add_tensor(f"blk.{i}.{kind}.weight", data, raw_dtype=qt)
            if kind in ("attn_q", "attn_k", "attn_v"):
                bias = rng.normal(0, 0.5, shape[0]).astype(np.float32)
                w.add_tensor(f"blk.{i}.{kind}.bias", bias)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_qwen2_gguf_matches_transformers(tmp_path):
    _tiny_qwen2_gguf(tmp_path / "tiny-qwen2.gguf")
    kinds = {t.tensor_type for t in gguf.GGUFReader(str(tmp_path / "tiny-qwen2.gguf")).tensors}
    assert {Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q5_0, Q.Q8_0, Q.F16, Q.BF16, Q.F32} <= kinds
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(tmp_path), gguf_file="tiny-qwen2.gguf", dtype=torch.float64
    ).eval()
    assert isinstance(ref, transformers.Qwen2ForCausalLM)
    cfg, params, _ = load_gguf(tmp_path / "tiny-qwen2.gguf")
    assert cfg.qkv_bias and cfg.tie_embeddings and (cfg.num_heads, cfg.num_kv_heads) == (4, 2)
    rng = np.random.default_rng(1)
    lengths, width = [9, 3, 12], 12
    tokens = np.zeros((3, width), np.int64)
    mask = np.zeros_like(tokens)
    for i, n in enumerate(lengths):
        tokens[i, width - n :], mask[i, width - n :] = rng.integers(0, V, n), 1
    with torch.no_grad():
        expected = ref(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(np.maximum(mask.cumsum(1) - 1, 0)),
        ).logits.numpy()
    got = forward(params, cfg, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask), full_logits=True)
    real = mask.astype(bool)
    assert np.abs(expected[real]).max() > 1.0
    assert_parity(np.asarray(got.logits), expected, real)
