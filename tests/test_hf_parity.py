"""Logits parity with transformers' PyTorch LlamaForCausalLM / Qwen2ForCausalLM.

Each reference is built from a tiny random config with a fixed seed, saved as safetensors
into a temp folder, and loaded through our strict HF loader. Compared on a left-padded
batch (positions from the mask on both sides), at every real token. The saved weights
are float32; the reference then runs them in float64, so the difference is our float32
forward's.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model import forward
from cbp_jax.model.hf_loader import load_hf_folder

SIZES = dict(
    vocab_size=97,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-6,
)


def _reference(kind: str, tied: bool):
    torch.manual_seed(0)
    if kind == "llama":
        config = transformers.LlamaConfig(**SIZES, rope_theta=1000.0, tie_word_embeddings=tied)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**SIZES, rope_theta=1000.0, tie_word_embeddings=tied)
        model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():  # larger random weights than HF's init so differences show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.15)
    return model.eval()


def _padded_batch():
    rng = np.random.default_rng(0)
    lengths = [9, 4, 13, 1]
    width = 16
    tokens = np.zeros((len(lengths), width), np.int64)
    mask = np.zeros_like(tokens)
    for i, n in enumerate(lengths):
        tokens[i, width - n :] = rng.integers(0, SIZES["vocab_size"], n)
        mask[i, width - n :] = 1
    return tokens, mask


@pytest.mark.parametrize("kind,tied", [("llama", False), ("llama", True), ("qwen2", False)])
def test_logits_match_transformers(tmp_path, kind, tied):
    ref = _reference(kind, tied)
    ref.save_pretrained(tmp_path, safe_serialization=True)
    ref = ref.double()  # the same weights; a float64 reference has no rounding of its own
    tokens, mask = _padded_batch()
    positions = np.maximum(mask.cumsum(1) - 1, 0)
    with torch.no_grad():
        expected = ref(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        ).logits.numpy()
    cfg, params = load_hf_folder(tmp_path)
    assert cfg.qkv_bias == (kind == "qwen2") and cfg.tie_embeddings == tied
    got = forward(params, cfg, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask), full_logits=True)
    got = np.asarray(got.logits)
    real = mask.astype(bool)
    assert np.abs(expected).max() > 1.0  # the comparison is not between near-zero logits
    assert np.abs(got[real] - expected[real]).max() <= 1e-4
    # answer-position logits equal the full logits at each row's last real token
    last = forward(params, cfg, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask)).logits
    np.testing.assert_allclose(np.asarray(last), expected[:, -1], atol=1e-4)
