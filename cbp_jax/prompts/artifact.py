"""A trained CBP generator as a saved, model-bound artifact (provider side).

A `GeneratorArtifact` holds the trained params, the fixed projection A, z0, the generator
config, and the fingerprint of the LLM it was trained with (`model_fingerprint`). It is
saved and loaded with Orbax (arrays) plus meta.json (config, fingerprint, training info,
content hash); loading it for a different model raises `GeneratorMismatchError` before any
array is read. Only its `release()` (r, z0, ids and task names; no weights) is meant for
users: that is all stage 2 needs to start CMA-ES at z0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from cbp_jax.prompts.generator import GeneratorConfig, PromptGenerator, check_shapes

ARTIFACT_FORMAT = "cbp-generator/1"
PROBE_ROWS = 16  # embedding rows whose norms identify a model (see `model_fingerprint`)


class GeneratorMismatchError(ValueError):
    """A generator (or task vector) is used with a model or generator it was not made for."""


# ---------------------------------------------------------------------------- identity


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
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "embed_probe": [round(float(x), 6) for x in probe],
    }


def check_model(expected: dict, model_or_fingerprint, what: str = "generator") -> None:
    """Raise `GeneratorMismatchError` unless the model is the one `expected` describes."""
    got = (
        model_or_fingerprint
        if isinstance(model_or_fingerprint, dict)
        else model_fingerprint(model_or_fingerprint)
    )
    for key in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
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


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True, eq=False)
class CBPRelease:
    """What the provider gives a user for stage 2: r, z0 and names. No weights."""

    task_dims: int
    z0_R: np.ndarray
    generator_id: str
    model_name: str
    tasks: tuple[str, ...]

    def __post_init__(self):
        z0 = np.asarray(self.z0_R, np.float32)
        if z0.shape != (self.task_dims,):
            raise ValueError(f"z0 must have shape ({self.task_dims},), got {z0.shape}")
        object.__setattr__(self, "z0_R", z0)


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratorArtifact:
    """A trained generator: config, params, A, z0, the model's fingerprint, training info."""

    cfg: GeneratorConfig
    params: dict
    A_DxR: Any
    z0_R: Any
    model: dict
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_shapes(self.cfg, self.params, self.A_DxR)
        if tuple(np.shape(self.z0_R)) != (self.cfg.task_dims,):
            raise ValueError(
                f"z0 must have shape ({self.cfg.task_dims},), got {np.shape(self.z0_R)}"
            )

    @property
    def generator_id(self) -> str:
        """Content hash of params, A and z0: what a saved task vector records."""
        leaves = jax.tree.leaves(self.params)
        return _digest(*leaves, self.A_DxR, self.z0_R)

    def adapter_params(self) -> dict:
        """Provider-side arrays for `ScoringService(adapter_params=...)` (CBPGenerator)."""
        return {
            "params": jax.tree.map(jnp.asarray, self.params),
            "A_DxR": jnp.asarray(self.A_DxR),
        }

    @property
    def domain(self) -> str | None:
        """The domain of the tasks it was trained on: recorded in `info` when saved, else
        derived from info["tasks"]; "mixed" across domains, None when unknown."""
        if self.info.get("domain"):
            return self.info["domain"]
        from cbp_jax.data.tasks import TASKS

        domains = {TASKS[t].domain for t in self.info.get("tasks", ()) if t in TASKS}
        return domains.pop() if len(domains) == 1 else ("mixed" if domains else None)

    def module(self) -> PromptGenerator:
        return PromptGenerator(self.cfg, state=self.adapter_params())

    def release(self) -> CBPRelease:
        return CBPRelease(
            self.cfg.task_dims,
            np.asarray(self.z0_R, np.float32),
            self.generator_id,
            str(self.model.get("name", "")),
            tuple(self.info.get("tasks", ())),
        )


# ---------------------------------------------------------------------------- Orbax I/O


def save_arrays(path: str | pathlib.Path, tree: Any, meta: dict) -> pathlib.Path:
    """Orbax-save a pytree under path/arrays and write path/meta.json (overwrites)."""
    path = pathlib.Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    tree = jax.tree.map(lambda x: np.asarray(x), tree)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "arrays", tree, force=True)
        ckptr.wait_until_finished()
    (path / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return path


def read_meta(path: str | pathlib.Path, fmt: str) -> dict:
    path = pathlib.Path(path).resolve()
    meta_file = path / "meta.json"
    if not meta_file.is_file() or not (path / "arrays").is_dir():
        raise FileNotFoundError(f"{path} is not a saved {fmt} (no meta.json and arrays/)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != fmt:
        raise ValueError(f"{path} holds {meta.get('format')!r}, not a {fmt!r}")
    return meta


def restore_arrays(path: str | pathlib.Path, target: Any) -> Any:
    """Restore path/arrays into the structure, shapes and dtypes of `target`."""
    path = pathlib.Path(path).resolve()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target
    )
    with ocp.StandardCheckpointer() as ckptr:
        out = ckptr.restore(path / "arrays", abstract)
    return jax.tree.map(np.asarray, out)


def save_generator(path: str | pathlib.Path, artifact: GeneratorArtifact) -> pathlib.Path:
    """Save params + A + z0 (Orbax) and config + model fingerprint + info (JSON)."""
    tree = {"params": artifact.params, "A_DxR": artifact.A_DxR, "z0_R": artifact.z0_R}
    meta = {
        "format": ARTIFACT_FORMAT,
        "config": dataclasses.asdict(artifact.cfg),
        "model": artifact.model,
        "info": {**artifact.info, "domain": artifact.domain},
        "generator_id": artifact.generator_id,
    }
    return save_arrays(path, tree, meta)


def load_generator(path: str | pathlib.Path, expected_model=None) -> GeneratorArtifact:
    """Load a saved generator; with `expected_model` (a LoadedModel or fingerprint dict),
    raise `GeneratorMismatchError` before reading any array if it belongs to another model."""
    meta = read_meta(path, ARTIFACT_FORMAT)
    if expected_model is not None:
        check_model(meta["model"], expected_model)
    cfg = GeneratorConfig(**meta["config"])
    zeros = lambda shape: np.zeros(shape, np.float32)  # noqa: E731
    target = {
        "params": jax.tree.map(zeros, cfg.param_shapes(), is_leaf=lambda x: isinstance(x, tuple)),
        "A_DxR": zeros((cfg.hidden_size, cfg.task_dims)),
        "z0_R": zeros((cfg.task_dims,)),
    }
    tree = restore_arrays(path, target)
    artifact = GeneratorArtifact(
        cfg, tree["params"], tree["A_DxR"], tree["z0_R"], meta["model"], meta["info"]
    )
    if artifact.generator_id != meta["generator_id"]:
        raise ValueError(f"{path}: arrays do not match the recorded generator id (corrupt?)")
    return artifact
