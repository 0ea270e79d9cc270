"""dtype="auto": the rule, and that bfloat16 keeps the forward's answers (tiny model)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.model import forward
from cbp_jax.model.precision import cpu_flags, resolve_dtype


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
