"""Bad input raises a clear error naming the problem."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from cbp_jax.model import (
    LlamaConfig,
    UnmappedTensorError,
    UnsupportedConfigError,
    forward,
    load_model,
)
from cbp_jax.model.hf_loader import load_hf_folder

TINY_HF = dict(
    model_type="llama",
    vocab_size=11,
    hidden_size=8,
    intermediate_size=12,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    tie_word_embeddings=True,
    hidden_act="silu",
)


def _tensors():
    r = np.random.default_rng(0)
    names = {
        "model.embed_tokens.weight": (11, 8),
        "model.norm.weight": (8,),
        "model.layers.0.input_layernorm.weight": (8,),
        "model.layers.0.post_attention_layernorm.weight": (8,),
        "model.layers.0.self_attn.q_proj.weight": (8, 8),
        "model.layers.0.self_attn.k_proj.weight": (4, 8),
        "model.layers.0.self_attn.v_proj.weight": (4, 8),
        "model.layers.0.self_attn.o_proj.weight": (8, 8),
        "model.layers.0.mlp.gate_proj.weight": (12, 8),
        "model.layers.0.mlp.up_proj.weight": (12, 8),
        "model.layers.0.mlp.down_proj.weight": (8, 12),
    }
    return {n: r.normal(size=s).astype(np.float32) for n, s in names.items()}


def _write(folder, config, tensors):
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_valid_tiny_folder_loads(tmp_path):
    cfg, params = load_hf_folder(_write(tmp_path / "ok", TINY_HF, _tensors()))
    assert cfg.num_kv_heads == 1 and params["layers"]["w_qkv"].shape == (1, 8, 16)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
        load_hf_folder(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY_HF))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="unknown model 'no-such-model'"):
        load_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        from cbp_jax.model.gguf_loader import load_gguf

        load_gguf(tmp_path / "x.gguf")


@pytest.mark.parametrize(
    "change,message",
    [
        ({"model_type": "gpt2"}, "unsupported architecture model_type='gpt2'"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"attention_bias": True}, "attention_bias"),
        ({"frobnicate": 3}, "unknown config field 'frobnicate'"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_parameters"),
    ],
)
def test_unsupported_config(tmp_path, change, message):
    with pytest.raises(UnsupportedConfigError, match=message):
        load_hf_folder(_write(tmp_path / "c", {**TINY_HF, **change}, _tensors()))


def test_unmapped_and_missing_tensors(tmp_path):
    extra = {**_tensors(), "model.layers.0.self_attn.q_norm.weight": np.ones(4, np.float32)}
    with pytest.raises(UnmappedTensorError, match="q_norm"):
        load_hf_folder(_write(tmp_path / "a", TINY_HF, extra))
    missing = _tensors()
    del missing["model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(UnmappedTensorError, match="up_proj"):
        load_hf_folder(_write(tmp_path / "b", TINY_HF, missing))
    wrong = {**_tensors(), "model.layers.0.mlp.up_proj.weight": np.ones((13, 8), np.float32)}
    with pytest.raises(UnmappedTensorError, match="w_gate_up"):
        load_hf_folder(_write(tmp_path / "c", TINY_HF, wrong))


def test_bad_forward_inputs(tiny_cfg, tiny_params):
    tokens = jnp.asarray([[1, 2, 3]])
    d = tiny_cfg.hidden_size
    with pytest.raises(ValueError, match="prompt must be B x T x D"):
        forward(tiny_params, tiny_cfg, tokens, prompt_BxTxD=jnp.zeros((1, 2, d + 1)))
    with pytest.raises(ValueError, match="prompt must be B x T x D"):
        forward(tiny_params, tiny_cfg, tokens, prompt_BxTxD=jnp.zeros((2, 2, d)))
    with pytest.raises(ValueError, match="deep prompts must be L x B x T x D"):
        forward(tiny_params, tiny_cfg, tokens, deep_prompts_LxBxTxD=jnp.zeros((1, 1, 2, d)))
    with pytest.raises(ValueError, match=r"token ids out of range \[0, 101\)"):
        forward(tiny_params, tiny_cfg, jnp.asarray([[1, 101]]))
    with pytest.raises(ValueError, match="token ids out of range"):
        forward(tiny_params, tiny_cfg, jnp.asarray([[-1, 3]]))
    with pytest.raises(ValueError, match="candidate ids out of range"):
        forward(tiny_params, tiny_cfg, tokens, candidates=jnp.asarray([5, 500]))
    with pytest.raises(ValueError, match="tokens must be B x S"):
        forward(tiny_params, tiny_cfg, jnp.asarray([1, 2, 3]))
    with pytest.raises(ValueError, match="integer ids"):
        forward(tiny_params, tiny_cfg, jnp.asarray([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="mask shape"):
        forward(tiny_params, tiny_cfg, tokens, jnp.ones((1, 4), jnp.int32))


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        LlamaConfig(10, 8, 8, 1, num_heads=3, num_kv_heads=2, head_dim=4)
    with pytest.raises(ValueError, match="dtype"):
        LlamaConfig(10, 8, 8, 1, 2, 1, 4, dtype="int8")
    with pytest.raises(ValueError, match="vocab_size"):
        LlamaConfig(0, 8, 8, 1, 2, 1, 4)
