"""Gemma 3 through the one decoder forward (random tiny model): prompts in embedding-table
units, deep and shared prompts, key/value prefixes, candidates, padding with a sliding
window, and errors for bad configs."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import UnsupportedConfigError, init_params
from cbp_jax.model.config import gemma3_config, sliding_pattern
from cbp_jax.model.decoder import forward, forward_jit, forward_shared_prompt
from cbp_jax.model.hf_loader import config_from_hf
from cbp_jax.privacy.peft import prefix_from_tokens


@pytest.fixture(scope="module")
def tiny():
    cfg = gemma3_config(
        vocab_size=61,
        hidden_size=32,
        intermediate_size=48,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        head_dim=8,
        sliding_layers=sliding_pattern(4, 2),
        sliding_window=3,
        query_pre_attn_scalar=8.0,
        final_logit_softcapping=20.0,
        bos_token_id=2,
    )
    return cfg, init_params(cfg, jax.random.key(0), std=0.3, norm_std=0.3)


def _ids(*rows):
    return jnp.asarray(rows, jnp.int32)


def test_prompt_of_embedding_rows_equals_the_tokens(tiny):
    cfg, params = tiny
    whole = forward(params, cfg, _ids([5, 9, 14, 7, 30])).logits
    prompt = params["embed"][jnp.asarray([5, 9])][None]
    split = forward(params, cfg, _ids([14, 7, 30]), prompt_BxTxD=prompt).logits
    np.testing.assert_allclose(split, whole, atol=1e-5)


def test_deep_and_shared_prompts(tiny):
    cfg, params = tiny
    tokens = _ids([5, 9, 14, 7], [0, 0, 3, 8])
    mask = (tokens != 0).astype(jnp.int32)
    p = jax.random.normal(jax.random.key(1), (6, cfg.hidden_size))
    deep = jax.random.normal(jax.random.key(2), (cfg.num_layers, 6, cfg.hidden_size))
    shallow = forward(params, cfg, tokens, mask, prompt_BxTxD=jnp.stack([p, p])).logits
    zero_deep = jnp.zeros((cfg.num_layers, 2, 6, cfg.hidden_size))
    both = forward(
        params, cfg, tokens, mask, prompt_BxTxD=jnp.stack([p, p]), deep_prompts_LxBxTxD=zero_deep
    ).logits
    np.testing.assert_allclose(both, shallow, atol=1e-5)
    one_layer = deep.at[1:].set(0.0)  # a deep prompt only at layer 0 is a shallow prompt
    via_deep = forward(
        params, cfg, tokens, mask, deep_prompts_LxBxTxD=jnp.stack([one_layer] * 2, 1)
    ).logits
    via_shallow = forward(params, cfg, tokens, mask, prompt_BxTxD=jnp.stack([deep[0]] * 2)).logits
    np.testing.assert_allclose(via_deep, via_shallow, atol=1e-5)
    shared = forward_shared_prompt(params, cfg, tokens, mask, prompt_TxD=p, deep_prompts_LxTxD=deep)
    full = forward(
        params,
        cfg,
        tokens,
        mask,
        prompt_BxTxD=jnp.stack([p, p]),
        deep_prompts_LxBxTxD=jnp.stack([deep, deep], 1),
    ).logits
    np.testing.assert_allclose(shared, full, atol=1e-5)
    assert float(jnp.abs(shared - shallow).max()) > 1e-3  # the deep prompt mattered


def test_padding_with_window_and_candidates(tiny):
    cfg, params = tiny
    rows = [[5, 9, 14, 7, 30, 11, 4], [8, 3]]
    width = 9
    tokens = np.zeros((2, width), np.int32)
    for i, r in enumerate(rows):
        tokens[i, width - len(r) :] = r
    mask = jnp.asarray(tokens != 0, jnp.int32)
    prompt = jax.random.normal(jax.random.key(3), (2, 2, cfg.hidden_size))
    batched = forward(params, cfg, jnp.asarray(tokens), mask, prompt_BxTxD=prompt).logits
    for i, r in enumerate(rows):
        alone = forward(params, cfg, _ids(r), prompt_BxTxD=prompt[i : i + 1]).logits[0]
        np.testing.assert_allclose(batched[i], alone, atol=2e-5)
    cands = jnp.asarray([7, 1, 40])
    sub = forward(params, cfg, jnp.asarray(tokens), mask, candidates=cands).logits
    np.testing.assert_allclose(
        sub, forward(params, cfg, jnp.asarray(tokens), mask).logits[:, cands], atol=1e-5
    )
    assert float(jnp.abs(batched).max()) <= cfg.final_logit_softcapping  # soft-capped


def test_one_forward_runs_both_families(tiny, tiny_cfg, tiny_params):
    """The same forward (eager and jitted) runs the Gemma and the Llama configs; the Gemma
    params carry the norms its config fields ask for."""
    cfg, params = tiny
    assert {"q_norm", "k_norm", "post_attn_norm", "post_mlp_norm"} <= set(params["layers"])
    assert "q_norm" not in tiny_params["layers"]
    tokens = _ids([5, 9, 14])
    for c, p in ((cfg, params), (tiny_cfg, tiny_params)):
        eager = forward(p, c, tokens).logits
        np.testing.assert_allclose(forward_jit(p, c, tokens).logits, eager, atol=1e-5)
        assert eager.shape == (1, c.vocab_size)


def test_kv_prefix_of_tokens_equals_running_them_first(tiny):
    """Prefix tuning runs on Gemma too: the prefix of [BOS; u] (the BOS slot included, the
    sliding window counting prefix positions) makes the text's output that of [BOS; u; text]."""
    cfg, params = tiny
    ids = jnp.asarray([5, 17, 3, 40], jnp.int32)
    prefix = prefix_from_tokens(params, cfg, ids)
    assert prefix["k_LxTxKxE"].shape == (cfg.num_layers, 5, cfg.num_kv_heads, cfg.head_dim)
    tokens = _ids([9, 14, 7, 30], [0, 0, 11, 4])
    mask = (tokens != 0).astype(jnp.int32)
    whole = jnp.concatenate([jnp.broadcast_to(ids, (2, 4)), tokens], 1)
    want = forward(params, cfg, whole, jnp.concatenate([jnp.ones((2, 4), jnp.int32), mask], 1))
    got = forward(params, cfg, tokens, mask, kv_prefix=prefix).logits
    np.testing.assert_allclose(got, want.logits, atol=2e-5)


def test_bad_configs_name_the_problem():
    with pytest.raises(ValueError, match="sliding_layers"):
        gemma3_config(61, 32, 48, 4, 4, 2, 8, sliding_layers=(True,))
    with pytest.raises(ValueError, match="num_kv_heads"):
        gemma3_config(61, 32, 48, 1, 4, 3, 8, sliding_layers=(False,))
    raw = {
        "model_type": "gemma3_text",
        "vocab_size": 61,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "head_dim": 8,
    }
    assert config_from_hf(raw).sliding_layers == (True, True)
    bad = [
        ({"model_type": "gemma3"}, "model_type='gemma3'"),
        ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping=50.0"),
        ({"hidden_activation": "relu"}, "hidden_activation='relu'"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention=True"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "rope type 'yarn'"),
        ({"moe_experts": 8}, "unknown config field 'moe_experts'"),
    ]
    for change, message in bad:
        with pytest.raises(UnsupportedConfigError, match=message):
            config_from_hf(raw | change)


def test_bf16_forward_and_shared_prompt_track_float32(tiny):
    """dtype="auto" picks bfloat16 on native-bf16 CPUs: the Gemma decoder's answer-position
    log-probs (plain, with a soft prompt, and through the shared-prompt path) stay within
    bf16 precision of float32, and bf16 really ran."""
    cfg, params = tiny
    cfg16 = dataclasses.replace(cfg, dtype="bfloat16")
    tokens = jax.random.randint(jax.random.key(3), (3, 10), 3, cfg.vocab_size)
    mask = jnp.ones_like(tokens).at[0, :4].set(0)
    p = 0.5 * jax.random.normal(jax.random.key(4), (5, cfg.hidden_size))
    for run in (
        lambda c: forward(params, c, tokens, mask).logits,
        lambda c: forward(params, c, tokens, mask, prompt_BxTxD=jnp.stack([p] * 3)).logits,
        lambda c: forward_shared_prompt(params, c, tokens, mask, prompt_TxD=p),
    ):
        lp32 = np.asarray(jax.nn.log_softmax(run(cfg)))
        lp16 = np.asarray(jax.nn.log_softmax(run(cfg16)))
        assert np.max(np.abs(lp32 - lp16)) < 0.1
        assert not np.allclose(lp32, lp16, atol=1e-7)


@pytest.mark.parametrize("which", ["shallow", "deep", "both"])
def test_shared_prompt_path_equals_broadcast_forward(tiny, which):
    """The computed-once prompt block gives `forward`'s numbers with the prompt broadcast:
    left padding, rows longer than the sliding window (3), candidates; with and without BOS."""
    cfg, params = tiny
    rows = [[5, 9, 14, 7, 30, 11, 4], [8, 3], [6, 6, 12, 40]]
    tokens = np.zeros((3, 8), np.int32)
    for i, r in enumerate(rows):
        tokens[i, 8 - len(r) :] = r
    tokens, mask = jnp.asarray(tokens), jnp.asarray(tokens != 0, jnp.int32)
    p = jax.random.normal(jax.random.key(5), (4, cfg.hidden_size))
    deep = 0.5 * jax.random.normal(jax.random.key(6), (cfg.num_layers, 4, cfg.hidden_size))
    shared_kw = {"prompt_TxD": p if which != "deep" else None}
    shared_kw["deep_prompts_LxTxD"] = deep if which != "shallow" else None
    full_kw = {
        "prompt_BxTxD": None if which == "deep" else jnp.stack([p] * 3),
        "deep_prompts_LxBxTxD": None if which == "shallow" else jnp.stack([deep] * 3, 1),
    }
    cands = jnp.asarray([7, 1, 40, 22])
    for c in (cfg, dataclasses.replace(cfg, bos_token_id=None)):
        want = forward(params, c, tokens, mask, candidates=cands, **full_kw).logits
        got = jax.jit(forward_shared_prompt, static_argnames="cfg")(
            params, c, tokens, mask, candidates=cands, **shared_kw
        )
        np.testing.assert_allclose(got, want, atol=2e-5)
        unwindowed = dataclasses.replace(c, sliding_window=100)
        other = forward_shared_prompt(
            params, unwindowed, tokens, mask, candidates=cands, **shared_kw
        )
        assert float(jnp.abs(other - got).max()) > 1e-3  # the window was exercised


def test_shared_prompt_bad_shapes_name_the_problem(tiny):
    cfg, params = tiny
    tokens = _ids([5, 9, 14])
    with pytest.raises(ValueError, match="needs prompt_TxD or deep_prompts_LxTxD"):
        forward_shared_prompt(params, cfg, tokens)
    with pytest.raises(ValueError, match="T x D"):
        forward_shared_prompt(params, cfg, tokens, prompt_TxD=jnp.zeros((1, 3, cfg.hidden_size)))
    with pytest.raises(ValueError, match="T x 32"):
        forward_shared_prompt(params, cfg, tokens, prompt_TxD=jnp.zeros((3, 7)))
    with pytest.raises(ValueError, match="L x T x D = 4"):
        forward_shared_prompt(params, cfg, tokens, deep_prompts_LxTxD=jnp.zeros((2, 3, 32)))
    with pytest.raises(ValueError, match="same length T"):
        forward_shared_prompt(
            params,
            cfg,
            tokens,
            prompt_TxD=jnp.zeros((3, 32)),
            deep_prompts_LxTxD=jnp.zeros((4, 2, 32)),
        )


def test_layer_inputs_and_bbtv2_stds_for_gemma(tiny):
    """The provider's per-layer hidden std (BBT/BBTv2 projections) runs on Gemma: the layer
    inputs are the forward's own (final state -> `return_hidden`), in prompt units."""
    import types

    from cbp_jax.model.block import rms_norm
    from cbp_jax.model.decoder import layer_inputs
    from cbp_jax.service.hidden_stats import clipped_std, layer_input_stds

    cfg, params = tiny
    ids = jnp.asarray([5, 9, 14, 7, 30, 11], jnp.int32)
    inputs, final = layer_inputs(params, cfg, ids)
    assert inputs.shape == (cfg.num_layers, 6, cfg.hidden_size)
    hidden = forward(params, cfg, ids[None], return_hidden=True).hidden_BxSxD[0]

    np.testing.assert_allclose(
        rms_norm(final, params["final_norm"], cfg.rms_norm_eps, 1.0), hidden, atol=1e-5
    )
    model = types.SimpleNamespace(params=params, cfg=cfg, tokenizer=None)
    stds = layer_input_stds(model)
    assert len(stds) == cfg.num_layers and all(np.isfinite(stds))
    ids64 = np.random.default_rng(0).integers(0, cfg.vocab_size, 64)
    want = clipped_std(np.asarray(layer_inputs(params, cfg, ids64)[0][1]) / np.sqrt(32))
    np.testing.assert_allclose(stds[1], want, rtol=1e-5)
