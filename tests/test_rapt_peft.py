"""PEFT methods for RAPT: LoRA with B = 0 and prefixes masked out are the base model; each
method's parameters move the output and receive gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.decoder import forward
from cbp_jax.privacy.peft import PeftConfig, init_peft, merge_lora, peft_forward, prefix_from_tokens

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)


@pytest.fixture(scope="module")
def model():
    return init_params(CFG, jax.random.key(0), std=0.2)


def _batch():
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(1, CFG.vocab_size, (3, 9)), jnp.int32)
    mask = np.ones((3, 9), np.int32)
    mask[1, :4] = 0  # left padding
    return tokens, jnp.asarray(mask)


def test_lora_with_zero_b_equals_the_base_model(model):
    tokens, mask = _batch()
    lora = init_peft(jax.random.key(1), model, CFG, PeftConfig("lora", rank=3))
    assert lora["a_qkv_LxDxR"].shape == (3, 48, 3) and float(jnp.abs(lora["a_qkv_LxDxR"]).max()) > 0
    base = forward(model, CFG, tokens, mask, return_hidden=True)
    got = peft_forward(
        model, CFG, PeftConfig("lora", rank=3), lora, tokens, mask, return_hidden=True
    )
    np.testing.assert_allclose(got.logits, base.logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.hidden_BxSxD, base.hidden_BxSxD, rtol=1e-6, atol=1e-6)
    # a non-zero B changes the output, and the merge is W + (alpha / r) A B
    lora_b = {**lora, "b_o_LxRxD": jnp.ones_like(lora["b_o_LxRxD"]) * 0.1}
    moved = peft_forward(model, CFG, PeftConfig("lora", rank=3), lora_b, tokens, mask)
    assert float(jnp.abs(moved.logits - base.logits).max()) > 1e-3
    merged = merge_lora(model, lora_b, 2.0)
    want = model["layers"]["w_o"] + 2.0 * lora_b["a_o_LxHExR"] @ lora_b["b_o_LxRxD"]
    np.testing.assert_allclose(merged["layers"]["w_o"], want, rtol=1e-6, atol=1e-6)


def test_zero_prefixes_masked_out_equal_the_base_model(model):
    tokens, mask = _batch()
    base = forward(model, CFG, tokens, mask, return_hidden=True)
    zeros = jnp.zeros((CFG.num_layers, 4, CFG.num_kv_heads, CFG.head_dim))
    prefix = {"k_LxTxKxE": zeros, "v_LxTxKxE": zeros}
    real = np.asarray(mask) > 0
    for p, pm in ((None, None), (prefix, jnp.zeros(4))):
        got = forward(model, CFG, tokens, mask, kv_prefix=p, prefix_mask_T=pm, return_hidden=True)
        np.testing.assert_allclose(got.logits, base.logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(got.hidden_BxSxD)[real], np.asarray(base.hidden_BxSxD)[real], atol=1e-5
        )
    # the same zero prefixes, attended to, take attention mass: the output changes
    seen = forward(model, CFG, tokens, mask, kv_prefix=prefix)
    assert float(jnp.abs(seen.logits - base.logits).max()) > 1e-3


def test_prefix_of_real_tokens_equals_running_them_first(model):
    ids = jnp.asarray([5, 17, 3, 88], jnp.int32)
    prefix = prefix_from_tokens(model, CFG, ids)
    assert prefix["k_LxTxKxE"].shape == (CFG.num_layers, 4, CFG.num_kv_heads, CFG.head_dim)
    tokens, _ = _batch()
    full = forward(model, CFG, jnp.concatenate([jnp.broadcast_to(ids, (3, 4)), tokens], 1))
    got = peft_forward(model, CFG, PeftConfig("prefix", length=4), prefix, tokens, None)
    np.testing.assert_allclose(got.logits, full.logits, rtol=1e-4, atol=1e-4)
    init = init_peft(jax.random.key(2), model, CFG, PeftConfig("prefix", length=4))
    assert init["v_LxTxKxE"].shape == prefix["v_LxTxKxE"].shape


@pytest.mark.parametrize("kind", ["prompt", "prefix", "lora"])
def test_every_method_gets_gradients(model, kind):
    tokens, mask = _batch()
    pc = PeftConfig(kind, length=3, rank=2)
    peft = init_peft(jax.random.key(3), model, CFG, pc)
    if kind == "lora":  # from B = 0 only B gets gradient; move B so A does too
        peft = {k: v + 0.05 if k.startswith("b_") else v for k, v in peft.items()}

    def loss(p):
        return peft_forward(model, CFG, pc, p, tokens, mask).logits[:, 7].sum()

    grads = jax.grad(loss)(peft)
    for name, g in grads.items():
        assert float(jnp.abs(g).max()) > 0, name


def test_bad_peft_config():
    with pytest.raises(ValueError, match="kind"):
        PeftConfig("adapter")
    with pytest.raises(ValueError, match="rank"):
        PeftConfig("lora", rank=0)
    with pytest.raises(ValueError, match="L x T x K x E"):
        bad = {"k_LxTxKxE": jnp.zeros((1, 2, 3)), "v_LxTxKxE": jnp.zeros((1, 2, 3))}
        forward(init_params(CFG, jax.random.key(0)), CFG, jnp.zeros((1, 2), int), kv_prefix=bad)
