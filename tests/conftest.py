"""Shared fixtures: a tiny random config and the real embedded default model (loaded once)."""

import os

# One OpenBLAS thread (set before numpy loads it; `make test` sets it too): multi-threaded
# OpenBLAS spin-waits on a busy 2-core machine, and pycma's and JAX's CPU eigh ran 5-10x
# slower for it (tests/test_es_pycma.py: 38 s against 4 s for one pycma run).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

from cbp_jax.model import LlamaConfig, init_params, load_model  # noqa: E402

# Parity tests compare float32 paths to tight tolerances. On GPUs JAX's default matmul
# precision may use TF32-class accumulation (an H200 run of test_shared_prefix differed by
# more than the tolerance); full precision makes the suite mean the same on every backend.
# On CPU this changes nothing.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def tiny_cfg():
    return LlamaConfig(
        vocab_size=101,
        hidden_size=48,
        intermediate_size=80,
        num_layers=3,
        num_heads=6,
        num_kv_heads=2,
        head_dim=8,
        rope_theta=500.0,
        tie_embeddings=False,
        qkv_bias=True,
    )


@pytest.fixture(scope="session")
def tiny_params(tiny_cfg):
    return init_params(tiny_cfg, jax.random.key(0), std=0.2)


@pytest.fixture(scope="session")
def real_model():
    return load_model("smollm2-135m")
