"""The POST student as shipped: its non-embedding weights in bfloat16, SHA256-checked, by name.

The provider distils once (`distill`, embeddings frozen: the student's embeddings are the
teacher's). `save_student` writes what the student adds to the teacher, its kept blocks and
final norm, as one safetensors file in bfloat16, and `meta.json` beside it: the teacher's
fingerprint (`model_fingerprint`), the kept layers, the distillation config, a summary of
the run, and the file's SHA256. `load_student(name, teacher)` reads
`<root>/<name>/` (root: `checkpoints/shipped`), checks the SHA256 and that the teacher is
the one it was distilled from, and rebuilds the student params (teacher embeddings + shipped
weights, in the teacher's dtype) and config. Table runs load it by name and never redistil.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import safetensors.flax

from cbp_jax.model.fingerprint import check_model, model_fingerprint
from cbp_jax.post.distill import TRAINED_WITH_FROZEN_EMBEDDINGS, DistillConfig, make_student

SHIPPED_ROOT = pathlib.Path("checkpoints/shipped")
WEIGHTS = "student.safetensors"


class StudentFileError(ValueError):
    """A shipped student is missing, altered, or belongs to another teacher."""


def sha256_of(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _named(student: dict) -> dict:
    """The shipped tensors by name: "layers.<leaf>" and "final_norm"."""
    return {
        **{f"layers.{k}": v for k, v in student["layers"].items()},
        "final_norm": student["final_norm"],
    }


def save_student(
    directory, student: dict, teacher, dcfg: DistillConfig, layers, summary: dict
) -> str:
    """Write the student's non-embedding weights (bf16) and meta.json; returns the SHA256.

    teacher: the `LoadedModel` it was distilled from; layers: the teacher blocks kept;
    summary: what the run measured (steps, seconds, losses, accuracies), stored as given.
    """
    if not dcfg.freeze_embeddings:
        raise StudentFileError("only a student distilled with frozen embeddings ships "
                               "without them (DistillConfig.freeze_embeddings)")  # fmt: skip
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS
    flat = {k: jnp.asarray(v, jnp.bfloat16) for k, v in sorted(_named(student).items())}
    safetensors.flax.save_file(flat, str(path))
    digest = sha256_of(path)
    meta = {
        "teacher": model_fingerprint(teacher),
        "layers": [int(i) for i in layers],
        "trained": list(TRAINED_WITH_FROZEN_EMBEDDINGS),
        "dtype": "bfloat16",
        "weights": WEIGHTS,
        "sha256": digest,
        "distill": json.loads(json.dumps(dataclasses.asdict(dcfg))),
        "summary": summary,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return digest


def load_student(name_or_dir, teacher, root=SHIPPED_ROOT):
    """(student params, student config) of a shipped student, rebuilt on `teacher`."""
    directory = pathlib.Path(name_or_dir)
    if not directory.is_dir():
        directory = pathlib.Path(root) / str(name_or_dir)
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise StudentFileError(f"no shipped student at {directory} (meta.json missing)")
    meta = json.loads(meta_path.read_text())
    path = directory / meta["weights"]
    if not path.is_file():
        raise StudentFileError(f"{path} missing (the student's weights)")
    got = sha256_of(path)
    if got != meta["sha256"]:
        raise StudentFileError(f"{path}: SHA256 {got} is not the recorded {meta['sha256']}")
    check_model(meta["teacher"], teacher, what="student")
    student, s_cfg = make_student(teacher.params, teacher.cfg, meta["layers"])
    arrays = safetensors.flax.load_file(str(path))
    dtype = jax.tree.leaves(teacher.params)[0].dtype
    expected = _named(student)
    if set(arrays) != set(expected):
        raise StudentFileError(f"{path}: tensors {sorted(arrays)}, expected {sorted(expected)}")
    for key, value in arrays.items():
        if expected[key].shape != value.shape:
            raise StudentFileError(
                f"{path}: {key} is {value.shape}, expected {expected[key].shape}"
            )
    layers = {k: arrays[f"layers.{k}"].astype(dtype) for k in student["layers"]}
    return {**student, "layers": layers, "final_norm": arrays["final_norm"].astype(dtype)}, s_cfg
