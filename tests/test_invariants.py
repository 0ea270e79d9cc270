"""Invariants of the pure forward pass, on a tiny random model (GQA, qkv bias, untied head)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import forward, mean_pooled_embeddings
from cbp_jax.model.block import embed_tokens
from cbp_jax.model.decoder import forward_jit

SEQ = np.array([5, 17, 3, 99, 42, 8, 61], np.int32)


def _pad(seqs, width, side="left"):
    tokens = np.zeros((len(seqs), width), np.int32)
    mask = np.zeros_like(tokens)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        tokens[i, sl], mask[i, sl] = s, 1
    return jnp.asarray(tokens), jnp.asarray(mask)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_invariance(tiny_cfg, tiny_params, side):
    alone = forward(tiny_params, tiny_cfg, jnp.asarray([SEQ])).logits[0]
    tokens, mask = _pad([SEQ[:3], SEQ, SEQ[2:]], width=12, side=side)
    batched = forward(tiny_params, tiny_cfg, tokens, mask).logits
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)
    short = forward(tiny_params, tiny_cfg, jnp.asarray([SEQ[:3]])).logits[0]
    np.testing.assert_allclose(batched[0], short, atol=1e-5)
    assert not np.allclose(alone, short, atol=1e-3)  # rows really differ


def test_soft_prompt_of_token_embeddings_equals_tokens(tiny_cfg, tiny_params):
    full = forward(tiny_params, tiny_cfg, jnp.asarray([SEQ]), full_logits=True).logits
    prompt = embed_tokens(tiny_params, jnp.asarray([SEQ[:3]]))
    out = forward(
        tiny_params, tiny_cfg, jnp.asarray([SEQ[3:]]), prompt_BxTxD=prompt, full_logits=True
    )
    np.testing.assert_allclose(out.logits, full[:, 3:], atol=1e-5)
    # with padding in the text part too
    tokens, mask = _pad([SEQ[3:], SEQ[4:]], width=6)
    padded = forward(tiny_params, tiny_cfg, tokens, mask, prompt_BxTxD=jnp.repeat(prompt, 2, 0))
    np.testing.assert_allclose(padded.logits[0], full[0, -1], atol=1e-5)


def test_jit_matches_eager(tiny_cfg, tiny_params):
    tokens, mask = _pad([SEQ, SEQ[1:5]], width=8)
    prompt = jax.random.normal(jax.random.key(1), (2, 4, tiny_cfg.hidden_size))
    kwargs = dict(prompt_BxTxD=prompt, return_hidden=True, return_pooled=True)
    eager = forward(tiny_params, tiny_cfg, tokens, mask, **kwargs)
    jitted = forward_jit(tiny_params, tiny_cfg, tokens, mask, **kwargs)
    for a, b in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_candidates_select_columns(tiny_cfg, tiny_params):
    tokens, mask = _pad([SEQ, SEQ[1:5]], width=8)
    full = forward(tiny_params, tiny_cfg, tokens, mask).logits
    cands = jnp.asarray([7, 3, 99])
    shared = forward(tiny_params, tiny_cfg, tokens, mask, candidates=cands).logits
    np.testing.assert_allclose(shared, full[:, cands], atol=1e-5)
    per_row = jnp.asarray([[7, 3], [1, 50]])
    rows = forward(tiny_params, tiny_cfg, tokens, mask, candidates=per_row).logits
    np.testing.assert_allclose(rows, jnp.take_along_axis(full, per_row, 1), atol=1e-5)
    at = forward(
        tiny_params, tiny_cfg, tokens, mask, answer_index_B=jnp.asarray([2, 5]), candidates=cands
    ).logits
    everywhere = forward(tiny_params, tiny_cfg, tokens, mask, full_logits=True).logits
    np.testing.assert_allclose(at[0], everywhere[0, 2, cands], atol=1e-5)


def test_pooled_and_hidden_outputs(tiny_cfg, tiny_params):
    tokens, mask = _pad([SEQ, SEQ[1:4]], width=8)
    out = forward(tiny_params, tiny_cfg, tokens, mask, return_hidden=True, return_pooled=True)
    emb = np.asarray(tiny_params["embed"])
    np.testing.assert_allclose(out.pooled_BxD[1], emb[SEQ[1:4]].mean(0), atol=1e-6)
    np.testing.assert_allclose(out.pooled_BxD, mean_pooled_embeddings(tiny_params, tokens, mask))
    assert out.hidden_BxSxD.shape == (2, 8, tiny_cfg.hidden_size)
    logits = out.hidden_BxSxD[:, -1] @ tiny_params["lm_head"]
    np.testing.assert_allclose(logits, out.logits, atol=1e-4)


def test_deep_prompts(tiny_cfg, tiny_params):
    one_layer = tiny_cfg.replace(num_layers=1)
    params1 = jax.tree.map(lambda w: w, tiny_params)
    params1["layers"] = jax.tree.map(lambda w: w[:1], tiny_params["layers"])
    tokens = jnp.asarray([SEQ])
    prompt = jax.random.normal(jax.random.key(2), (1, 3, tiny_cfg.hidden_size))
    shallow = forward(params1, one_layer, tokens, prompt_BxTxD=prompt).logits
    deep = forward(params1, one_layer, tokens, deep_prompts_LxBxTxD=prompt[None]).logits
    np.testing.assert_allclose(deep, shallow, atol=1e-6)
    zeros = jnp.zeros((tiny_cfg.num_layers, *prompt.shape))
    with_zero_deep = forward(
        tiny_params, tiny_cfg, tokens, prompt_BxTxD=prompt, deep_prompts_LxBxTxD=zeros
    ).logits
    np.testing.assert_allclose(
        with_zero_deep,
        forward(tiny_params, tiny_cfg, tokens, prompt_BxTxD=prompt).logits,
        atol=1e-6,
    )
    # in a deeper model, changing a later layer's prompt changes the answer
    deep3 = jnp.repeat(prompt[None], tiny_cfg.num_layers, 0)
    base = forward(tiny_params, tiny_cfg, tokens, deep_prompts_LxBxTxD=deep3).logits
    moved = forward(tiny_params, tiny_cfg, tokens, deep_prompts_LxBxTxD=deep3.at[2].add(1.0))
    assert not np.allclose(base, moved.logits, atol=1e-4)
