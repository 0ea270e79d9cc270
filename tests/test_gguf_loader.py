"""GGUF loading: q/k un-permutation, strict names and config, on tiny written files."""

import gguf
import jax
import numpy as np
import pytest

from cbp_jax.model import UnmappedTensorError, UnsupportedConfigError
from cbp_jax.model.convert import assemble_params
from cbp_jax.model.gguf_loader import load_gguf, unpermute_rope_rows

N_HEADS, N_KV, D, F, V = 2, 1, 8, 12, 11


def llama_cpp_permute(w, n_heads):
    """What llama.cpp's HF->GGUF converter does to q/k rows."""
    out, inp = w.shape
    return w.reshape(n_heads, 2, out // n_heads // 2, inp).swapaxes(1, 2).reshape(out, inp)


def _hf_tensors():
    r = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (V, D),
        "model.norm.weight": (D,),
        "model.layers.0.input_layernorm.weight": (D,),
        "model.layers.0.post_attention_layernorm.weight": (D,),
        "model.layers.0.self_attn.q_proj.weight": (D, D),
        "model.layers.0.self_attn.k_proj.weight": (D // N_HEADS * N_KV, D),
        "model.layers.0.self_attn.v_proj.weight": (D // N_HEADS * N_KV, D),
        "model.layers.0.self_attn.o_proj.weight": (D, D),
        "model.layers.0.mlp.gate_proj.weight": (F, D),
        "model.layers.0.mlp.up_proj.weight": (F, D),
        "model.layers.0.mlp.down_proj.weight": (D, F),
    }
    return {n: r.normal(size=s).astype(np.float32) for n, s in shapes.items()}


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
    "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
    "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
    "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
    "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
    "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
    "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
    "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
    "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
}


def _write_gguf(path, arch="llama", extra_tensor=None, extra_field=None):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_embedding_length(D)
    w.add_feed_forward_length(F)
    w.add_head_count(N_HEADS)
    w.add_head_count_kv(N_KV)
    w.add_rope_freq_base(1000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    if extra_field:
        w.add_uint32(f"{arch}.{extra_field}", 1)
    hf = _hf_tensors()
    for name, t in hf.items():
        if name.endswith("q_proj.weight"):
            t = llama_cpp_permute(t, N_HEADS)
        elif name.endswith("k_proj.weight"):
            t = llama_cpp_permute(t, N_KV)
        w.add_tensor(GGUF_NAMES[name], t)
    if extra_tensor:
        w.add_tensor(extra_tensor, np.ones(D, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return hf


def test_unpermute_inverts_llama_cpp():
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    np.testing.assert_array_equal(unpermute_rope_rows(llama_cpp_permute(w, 2), 2), w)


def test_tiny_gguf_equals_hf_tensors(tmp_path):
    hf = _write_gguf(tmp_path / "m.gguf")
    cfg, params, _ = load_gguf(tmp_path / "m.gguf")
    assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.tie_embeddings) == (2, 1, 4, True)
    expected = assemble_params(cfg, hf)
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_gguf_strictness(tmp_path):
    _write_gguf(tmp_path / "a.gguf", extra_tensor="blk.0.attn_q_norm.weight")
    with pytest.raises(UnmappedTensorError, match="blk.0.attn_q_norm.weight"):
        load_gguf(tmp_path / "a.gguf")
    _write_gguf(tmp_path / "b.gguf", extra_field="expert_count")
    with pytest.raises(UnsupportedConfigError, match="llama.expert_count"):
        load_gguf(tmp_path / "b.gguf")
    _write_gguf(tmp_path / "c.gguf", arch="falcon")
    with pytest.raises(UnsupportedConfigError, match="falcon"):
        load_gguf(tmp_path / "c.gguf")


def test_model_dir_serves_registered_names_from_files(tmp_path, monkeypatch):
    """CBP_JAX_MODEL_DIR (an offline host, ops/accelerator.sh): a registered name loads
    DIR/<name>.gguf, and a missing file is named."""
    from cbp_jax.model import registry

    monkeypatch.setenv("CBP_JAX_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="holds no gemma3-270m.gguf"):
        registry.load_model("gemma3-270m")
    (tmp_path / "smollm2-135m.gguf").write_bytes(b"")
    seen = []

    def fake_load(path, dtype):
        seen.append(path)
        raise RuntimeError("stop here")

    monkeypatch.setattr(registry, "load_gguf", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        registry.load_model("smollm2-135m")
    assert seen == [tmp_path / "smollm2-135m.gguf"]
