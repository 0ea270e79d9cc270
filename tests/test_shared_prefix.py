"""The shared-prompt forward equals `forward` with the prompt broadcast to every row."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import LlamaConfig, forward, init_params
from cbp_jax.model.decoder import forward_shared_prompt

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)


@pytest.fixture(scope="module")
def setup():
    k_params, k_tok, k_prompt, k_deep = jax.random.split(jax.random.key(0), 4)
    params = jax.tree.map(lambda w: w * 4.0, init_params(CFG, k_params))
    tokens = jax.random.randint(k_tok, (4, 9), 0, CFG.vocab_size)
    mask = jnp.array(
        [[1] * 9, [0, 0, 0] + [1] * 6, [0] * 7 + [1] * 2, [1] * 5 + [0] * 4], jnp.int32
    )
    prompt = jax.random.normal(k_prompt, (5, CFG.hidden_size))
    deep = 0.5 * jax.random.normal(k_deep, (CFG.num_layers, 5, CFG.hidden_size))
    return params, tokens, mask, prompt, deep


def _reference(params, tokens, mask, prompt=None, deep=None, candidates=None):
    b = tokens.shape[0]
    return forward(
        params,
        CFG,
        tokens,
        mask,
        prompt_BxTxD=None if prompt is None else jnp.broadcast_to(prompt, (b, *prompt.shape)),
        deep_prompts_LxBxTxD=None
        if deep is None
        else jnp.broadcast_to(deep[:, None], (deep.shape[0], b, *deep.shape[1:])),
        candidates=candidates,
    ).logits


@pytest.mark.parametrize("which", ["shallow", "deep", "both"])
def test_shared_prompt_equals_broadcast_prompt(setup, which):
    params, tokens, mask, prompt, deep = setup
    p = None if which == "deep" else prompt
    dp = None if which == "shallow" else deep
    ours = forward_shared_prompt(params, CFG, tokens, mask, prompt_TxD=p, deep_prompts_LxTxD=dp)
    ref = _reference(params, tokens, mask, p, dp)
    assert float(jnp.abs(ref).max()) > 1.0  # the check is not on near-zero logits
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


def test_shared_prompt_candidates_jit_and_padding(setup):
    params, tokens, mask, prompt, _ = setup
    cands = jnp.array([3, 17, 99])
    f = jax.jit(forward_shared_prompt, static_argnames="cfg")
    ours = f(params, CFG, tokens, mask, prompt_TxD=prompt, candidates=cands)
    np.testing.assert_allclose(
        ours, _reference(params, tokens, mask, prompt, None, cands), atol=2e-4
    )
    # Row 2 padded left vs the same row alone, unpadded.
    alone = forward_shared_prompt(params, CFG, tokens[2:3, 7:], None, prompt_TxD=prompt)
    full = forward_shared_prompt(params, CFG, tokens, mask, prompt_TxD=prompt)
    np.testing.assert_allclose(full[2], alone[0], atol=2e-4)


def test_shared_prompt_bad_shapes(setup):
    params, tokens, mask, prompt, deep = setup
    with pytest.raises(ValueError, match="T x D"):
        forward_shared_prompt(params, CFG, tokens, mask, prompt_TxD=prompt[:, :7])
    with pytest.raises(ValueError, match="L x T x D"):
        forward_shared_prompt(params, CFG, tokens, mask, deep_prompts_LxTxD=deep[:2])
    with pytest.raises(ValueError, match="needs prompt"):
        forward_shared_prompt(params, CFG, tokens, mask)


def test_shared_prompt_with_qkv_bias_and_untied_head(tiny_cfg, tiny_params, setup):
    _, tokens, mask, prompt, deep = setup
    b = tokens.shape[0]
    ours = forward_shared_prompt(
        tiny_params, tiny_cfg, tokens, mask, prompt_TxD=prompt, deep_prompts_LxTxD=deep
    )
    ref = forward(
        tiny_params,
        tiny_cfg,
        tokens,
        mask,
        prompt_BxTxD=jnp.broadcast_to(prompt, (b, *prompt.shape)),
        deep_prompts_LxBxTxD=jnp.broadcast_to(deep[:, None], (deep.shape[0], b, *deep.shape[1:])),
    ).logits
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("deep_kind", [False, True])
def test_population_scoring_uses_the_shared_path_with_equal_scores(setup, deep_kind):
    """score_population (shared prompt, chunked and not) == the per-example broadcast path."""
    import dataclasses

    from cbp_jax.service.oracle import DeepPrompt, SoftPrompt, score_population

    params, tokens, mask, prompt, deep = setup
    one = deep if deep_kind else prompt
    payload = jnp.stack([one * (i + 1) / 3 for i in range(3)])  # 3 distinct candidates
    adapter = DeepPrompt() if deep_kind else SoftPrompt()
    payload = jnp.moveaxis(payload, 0, adapter.payload_axis)

    @dataclasses.dataclass(frozen=True)
    class Unshared(type(adapter)):
        shared = False

    cands = jnp.array([[3], [17], [99]])
    kw = dict(cfg=CFG)
    ref = score_population(params, None, payload, tokens, mask, cands, adapter=Unshared(), **kw)
    for chunk in (None, 1, 2):
        ours = score_population(
            params,
            None,
            payload,
            tokens,
            mask,
            cands,
            adapter=adapter,
            population_chunk=chunk,
            **kw,
        )
        np.testing.assert_allclose(ours, ref, atol=2e-4)
    assert ref.shape == (3, 4, 3, 1)
