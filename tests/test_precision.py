"""dtype="auto": the rule, that bfloat16 keeps the forward's answers (tiny model), and that
the mixed-precision products keep their backward in bf16."""

import functools
import os

import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import forward
from cbp_jax.model.mixed_dot import dense, mixed_einsum
from cbp_jax.model.precision import cpu_flags, machine_info, resolve_dtype


@pytest.mark.parametrize(
    "backend,flags,expected",
    [
        ("gpu", frozenset(), "bfloat16"),
        ("tpu", frozenset(), "bfloat16"),
        ("cpu", frozenset({"avx2", "amx_bf16", "amx_tile"}), "bfloat16"),
        ("cpu", frozenset({"avx512f", "avx512_bf16"}), "bfloat16"),
        ("cpu", frozenset({"avx2", "avx512f"}), "float32"),  # e.g. AMD EPYC without bf16
        ("cpu", frozenset(), "float32"),
    ],
)
def test_auto_picks_bf16_only_where_native(backend, flags, expected):
    choice = resolve_dtype("auto", backend=backend, flags=flags)
    assert choice.dtype == expected and choice.requested == "auto" and choice.reason


def test_explicit_dtype_wins_and_bad_names_fail():
    assert resolve_dtype("float32", backend="gpu").dtype == "float32"
    assert resolve_dtype("bfloat16", backend="cpu", flags=frozenset()).dtype == "bfloat16"
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8")


def test_cpu_flags_reads_this_machine():
    flags = cpu_flags()
    assert isinstance(flags, frozenset)
    if jax.default_backend() == "cpu" and flags:
        assert resolve_dtype("auto").dtype == (
            "bfloat16" if {"amx_bf16", "avx512_bf16"} & flags else "float32"
        )


def test_machine_info_reads_model_and_bf16_flags(tmp_path):
    """One description of the machine for every benchmark: model name, native bf16 flags
    only (sorted), cores; an unreadable cpuinfo gives "unknown" and no flags, not an error."""
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Test CPU 9000\n"
        "flags\t\t: fpu avx512_bf16 avx2 amx_bf16 sse\n"
    )
    m = machine_info(str(info))
    assert m["cpu"] == "Test CPU 9000"
    assert m["bf16_flags"] == ["amx_bf16", "avx512_bf16"]
    assert m["cpu_count"] == os.cpu_count()
    missing = machine_info(str(tmp_path / "absent"))
    assert (missing["cpu"], missing["bf16_flags"]) == ("unknown", [])


def test_bf16_forward_tracks_float32(tiny_cfg, tiny_params):
    """Same tiny model in both dtypes: answer-position log-probs agree to bf16 precision."""
    cfg, params = tiny_cfg, tiny_params
    tokens = jax.random.randint(jax.random.key(1), (4, 12), 0, cfg.vocab_size)
    mask = jnp.ones_like(tokens).at[0, :3].set(0)
    lp32 = jax.nn.log_softmax(forward(params, cfg, tokens, mask).logits)
    cfg16 = cfg.replace(dtype="bfloat16")
    lp16 = jax.nn.log_softmax(forward(params, cfg16, tokens, mask).logits)
    assert np.max(np.abs(np.asarray(lp32) - np.asarray(lp16))) < 0.1
    assert not np.allclose(np.asarray(lp32), np.asarray(lp16), atol=1e-7)  # bf16 really ran


def test_bf16_per_row_candidate_head_returns_float32_logits(tiny_cfg, tiny_params):
    """A per-row candidate head (B x D x C) scores like the full head: bf16 inputs, float32
    accumulation and output, so its logits are not rounded to bf16 (~3 digits)."""
    cfg16 = tiny_cfg.replace(dtype="bfloat16")
    tokens = jax.random.randint(jax.random.key(2), (2, 10), 0, tiny_cfg.vocab_size)
    mask = jnp.ones_like(tokens)
    full = forward(tiny_params, cfg16, tokens, mask).logits
    per_row = jnp.asarray([[7, 3, 60], [1, 50, 99]])
    rows = forward(tiny_params, cfg16, tokens, mask, candidates=per_row).logits
    picked = jnp.take_along_axis(full, per_row, 1)
    assert np.abs(np.asarray(picked)).max() > 0.5  # bf16 spacing there is >= 2**-9
    np.testing.assert_allclose(rows, picked, rtol=0, atol=2e-5)


def _dot_operand_dtypes(fn, *args) -> set:
    """The (lhs, rhs) dtypes of every dot_general in fn's jaxpr, nested calls included."""
    found = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                found.add(tuple(str(v.aval.dtype) for v in eqn.invars))
        for sub in jax.extend.core.subjaxprs(jaxpr):
            walk(getattr(sub, "jaxpr", sub))

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def test_mixed_products_backward_in_bf16_and_unchanged_forward():
    """bf16 products: the forward is the plain bf16-in / f32-out dot, and the gradient's dots
    take bf16 on both sides (JAX's own rule would multiply the f32 cotangent with a bf16
    operand); gradients agree with JAX's rule to bf16 precision; float32 is untouched."""
    x = jax.random.normal(jax.random.key(0), (3, 5, 16))
    w = jax.random.normal(jax.random.key(1), (16, 24))
    for dt in (jnp.float32, jnp.bfloat16):
        plain = jnp.matmul(x.astype(dt), w.astype(dt), preferred_element_type=jnp.float32)
        assert jnp.array_equal(dense(x, w.astype(dt)), plain)

    def loss(x, w, product):
        return jnp.sum(jnp.sin(product(x, w)))

    ours = functools.partial(loss, product=dense)

    def jax_rule(x, w):  # the product as it was: JAX's own transpose for the backward
        return jnp.matmul(x.astype(w.dtype), w, preferred_element_type=jnp.float32)

    jaxs = functools.partial(loss, product=jax_rule)
    w16 = w.astype(jnp.bfloat16)
    assert _dot_operand_dtypes(jax.grad(ours), x, w16) == {("bfloat16", "bfloat16")}
    assert ("float32", "bfloat16") in _dot_operand_dtypes(jax.grad(jaxs), x, w16)
    g, ref = jax.grad(ours)(x, w16), jax.grad(jaxs)(x, w16)
    assert g.dtype == jnp.float32 and float(jnp.abs(g - ref).max() / jnp.abs(ref).max()) < 0.02
    assert jnp.array_equal(jax.grad(ours)(x, w), jax.grad(jaxs)(x, w))
    q = jax.random.normal(jax.random.key(2), (2, 3, 4, 8))
    k = jax.random.normal(jax.random.key(3), (2, 3, 6, 8))

    def att(q, k):
        return jnp.sum(jnp.cos(mixed_einsum("bkme,bkse->bkms", q, k, jnp.bfloat16)))

    assert _dot_operand_dtypes(jax.grad(att, (0, 1)), q, k) == {("bfloat16", "bfloat16")}
