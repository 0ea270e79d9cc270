"""Gemma 3 logits parity with transformers' PyTorch Gemma3ForCausalLM (tiny random model).

The config has local and global layers, a sliding window shorter than the longest row, two
RoPE bases, linear RoPE scaling on the global layers, query_pre_attn_scalar != head_dim and
final logit soft-capping. Compared on left- and right-padded batches at every real token,
with the BOS the forward prepends (transformers gets it as the first real token) and without.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from cbp_jax.model.decoder import forward
from cbp_jax.model.hf_loader import load_hf_folder

V, BOS, WINDOW = 97, 2, 5


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=5,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=WINDOW,
        sliding_window_pattern=3,
        query_pre_attn_scalar=24,
        final_logit_softcapping=3.0,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
        },
        bos_token_id=BOS,
    )
    model = transformers.Gemma3ForCausalLM(config)
    with torch.no_grad():  # larger random weights than HF's init so differences show
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if "norm" in name else 0.15)
    model.eval()
    folder = tmp_path_factory.mktemp("gemma")
    model.save_pretrained(folder, safe_serialization=True)
    cfg, params = load_hf_folder(folder)
    return model.double(), cfg, params  # same weights; float64 reference, no rounding of its own


def _batch(left: bool, bos: bool):
    """(ours: tokens, mask) and (transformers: tokens with BOS as first real token, mask)."""
    rng = np.random.default_rng(1)
    lengths, width = [11, 4, 13, 1], 14
    ours = np.zeros((len(lengths), width), np.int64)
    ref = np.zeros((len(lengths), width + bos), np.int64)
    for i, n in enumerate(lengths):
        ids = list(rng.integers(3, V, n))
        o0 = width - n if left else 0
        r0 = width + bos - n - bos if left else 0
        ours[i, o0 : o0 + n] = ids
        ref[i, r0 : r0 + n + bos] = [BOS] * bos + ids
    return ours, (ours != 0).astype(np.int64), ref, (ref != 0).astype(np.int64)


def test_config_has_both_layer_kinds(reference):
    _, cfg, _ = reference
    assert cfg.sliding_layers == (True, True, False, True, True)
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.rope_scaling_factor) == (1000.0, 50.0, 2.0)
    assert cfg.query_pre_attn_scalar == 24 and cfg.final_logit_softcapping == 3.0
    assert cfg.bos_token_id == BOS and cfg.sliding_window == WINDOW


@pytest.mark.parametrize("left", [True, False])
@pytest.mark.parametrize("bos", [True, False])
def test_logits_match_transformers(reference, left, bos):
    model, cfg, params = reference
    cfg = cfg if bos else cfg.replace(bos_token_id=None)
    tokens, mask, ref_tokens, ref_mask = _batch(left, bos)
    with torch.no_grad():
        expected = model(
            input_ids=torch.tensor(ref_tokens),
            attention_mask=torch.tensor(ref_mask),
            position_ids=torch.tensor(np.maximum(ref_mask.cumsum(1) - 1, 0)),
        ).logits.numpy()
    if bos:  # drop transformers' BOS position so both index the text tokens
        keep = ref_mask.astype(bool) & (ref_tokens != BOS)
        expected_real = expected[keep]
    else:
        expected_real = expected[ref_mask.astype(bool)]
    got = forward(params, cfg, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask), full_logits=True)
    got_real = np.asarray(got.logits)[mask.astype(bool)]
    assert np.abs(expected_real).max() > 1.0  # not a comparison of near-zero logits
    assert np.abs(got_real - expected_real).max() <= 1e-4
    # answer-position logits equal the full logits at each row's last real token
    last = forward(params, cfg, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask)).logits
    last_expected = np.stack(
        [expected[i, np.flatnonzero(ref_mask[i])[-1]] for i in range(len(tokens))]
    )
    np.testing.assert_allclose(np.asarray(last), last_expected, atol=1e-4)


def test_window_matters(reference):
    """The sliding window is exercised: without it the longest row's logits change."""
    _, cfg, params = reference
    tokens, mask, _, _ = _batch(True, True)
    args = (jnp.asarray(tokens, jnp.int32), jnp.asarray(mask))
    windowed = forward(params, cfg, *args).logits
    unwindowed = forward(params, cfg.replace(sliding_window=1000), *args).logits
    assert float(jnp.abs(windowed[2] - unwindowed[2]).max()) > 1e-3
    np.testing.assert_allclose(windowed[1], unwindowed[1], atol=1e-6)  # 4 tokens < window
