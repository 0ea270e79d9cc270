"""The shipped POST student: bf16 round trip, SHA256 check, the teacher check, and what ships.

Tiny random teacher; the real student's file is checked where it is committed."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cbp_jax.contract import GeneratorMismatchError
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.post import DistillConfig, distill
from cbp_jax.post.shipped_student import (
    SHIPPED_ROOT,
    StudentFileError,
    load_student,
    save_student,
    sha256_of,
)

CFG = LlamaConfig(101, 48, 80, 5, 6, 2, 8)
DCFG = DistillConfig(layers=(0, 1, 4), steps=2, batch_size=2, seq_len=8, learning_rate=1e-2)
REPO = pathlib.Path(__file__).resolve().parents[1]


def teacher(seed=0, cfg=CFG):
    return LoadedModel(cfg, init_params(cfg, jax.random.key(seed), std=0.2), None, "tiny.gguf")


@pytest.fixture(scope="module")
def distilled():
    t = teacher()
    corpus = np.asarray(jax.random.randint(jax.random.key(5), (8, 8), 0, CFG.vocab_size))
    return t, distill(t.params, CFG, corpus, DCFG, progress=False)


def test_round_trip_is_the_student_in_bf16(distilled, tmp_path):
    t, result = distilled
    sha = save_student(tmp_path / "s", result.params, t, DCFG, DCFG.layers, {"steps": 2})
    assert sha == sha256_of(tmp_path / "s" / "student.safetensors")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert meta["sha256"] == sha and meta["layers"] == [0, 1, 4]
    params, s_cfg = load_student(tmp_path / "s", t)
    assert s_cfg.num_layers == 3
    np.testing.assert_array_equal(params["embed"], t.params["embed"])  # not shipped
    bf16 = jax.tree.map(lambda w: np.asarray(jnp.asarray(w, jnp.bfloat16), np.float32),
                        result.params["layers"])  # fmt: skip
    jax.tree.map(np.testing.assert_array_equal, params["layers"], bf16)
    assert not np.allclose(
        params["layers"]["w_qkv"], t.params["layers"]["w_qkv"][np.array([0, 1, 4])]
    )


def test_refusals(distilled, tmp_path):
    t, result = distilled
    d = tmp_path / "s"
    save_student(d, result.params, t, DCFG, DCFG.layers, {})
    with pytest.raises(GeneratorMismatchError):  # another teacher of the same shapes
        load_student(d, teacher(seed=1))
    with pytest.raises(GeneratorMismatchError):
        load_student(d, teacher(cfg=dataclasses.replace(CFG, num_layers=6)))
    raw = bytearray((d / "student.safetensors").read_bytes())
    raw[-1] ^= 1
    (d / "student.safetensors").write_bytes(bytes(raw))
    with pytest.raises(StudentFileError, match="SHA256"):
        load_student(d, t)
    with pytest.raises(StudentFileError, match="meta.json missing"):
        load_student("no-such-student", t, root=tmp_path)
    every = dataclasses.replace(DCFG, freeze_embeddings=False)
    with pytest.raises(StudentFileError, match="frozen embeddings"):
        save_student(tmp_path / "t", result.params, t, every, DCFG.layers, {})


def test_committed_students_are_small_and_match_their_sha256():
    """Every student under checkpoints/shipped: under 40 MB, its SHA256 as recorded."""
    for meta_path in sorted((REPO / SHIPPED_ROOT).glob("*student*/meta.json")):
        meta = json.loads(meta_path.read_text())
        weights = meta_path.parent / meta["weights"]
        assert weights.stat().st_size <= 40 * 2**20, weights
        assert sha256_of(weights) == meta["sha256"], weights
        assert meta["dtype"] == "bfloat16"
