"""What identifies a loaded model: a fingerprint of its shapes and a few embedding norms.

A saved generator, task vector or prompt records the fingerprint of its model; `check_model`
raises `contract.GeneratorMismatchError` when it is used with another. `params_digest`, the
exact content hash of trained weights, is what run records cite.
"""

from __future__ import annotations

import hashlib
import pathlib

import jax
import numpy as np

from cbp_jax.contract import GeneratorMismatchError

PROBE_ROWS = 16  # embedding rows whose norms identify a model (see `model_fingerprint`)
SHAPES = ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size")


def params_digest(*trees) -> str:
    """16 hex digits of SHA-256 over every leaf of `trees` (as float32, with its shape)."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(trees):
        a = np.ascontiguousarray(np.asarray(leaf, np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def model_fingerprint(model) -> dict:
    """What identifies the LLM a generator belongs to (a `LoadedModel`).

    Shapes must match exactly; the norms of a few fixed embedding rows must match to 1%
    (so the same model loaded in float32 or bfloat16 is the same model, another is not).
    """
    cfg, embed = model.cfg, model.params["embed"]
    rows = np.linspace(0, cfg.vocab_size - 1, PROBE_ROWS).astype(np.int64)
    probe = np.linalg.norm(np.asarray(embed[rows], np.float32), axis=1)
    return {
        "name": pathlib.Path(str(model.source)).name,
        **{key: getattr(cfg, key) for key in SHAPES},
        "embed_probe": [round(float(x), 6) for x in probe],
    }


def check_model(expected: dict, model_or_fingerprint, what: str = "generator") -> None:
    """Raise `GeneratorMismatchError` unless the model is the one `expected` describes."""
    got = model_or_fingerprint
    if not isinstance(got, dict):
        got = model_fingerprint(got)
    for key in SHAPES:
        if expected.get(key) != got.get(key):
            raise GeneratorMismatchError(
                f"this {what} was trained for model {expected.get('name')!r} "
                f"({key}={expected.get(key)}), not for {got.get('name')!r} ({key}={got.get(key)})"
            )
    if not np.allclose(expected["embed_probe"], got["embed_probe"], rtol=1e-2, atol=1e-6):
        raise GeneratorMismatchError(
            f"this {what} was trained for model {expected.get('name')!r}; {got.get('name')!r} "
            "has the same shapes but different embedding weights"
        )
