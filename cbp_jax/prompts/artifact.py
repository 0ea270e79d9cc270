"""A trained CBP generator as a saved, model-bound artifact (provider side).

A `GeneratorArtifact` holds the trained params, the fixed projection A, z0, the generator
config, and the fingerprint of the LLM it was trained with (`model_fingerprint`). It is
saved and loaded with Orbax (arrays) plus meta.json (config, fingerprint, training info,
content hash); loading it for a different model raises `GeneratorMismatchError` before any
array is read. Only its `release()` (a `contract.CBPRelease`: r, z0, ids and task names; no
weights) is meant for users: that is all stage 2 needs to start CMA-ES at z0.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.ckpt import read_meta, restore_arrays, save_arrays
from cbp_jax.contract import CBPRelease
from cbp_jax.model.fingerprint import check_model, params_digest
from cbp_jax.prompts.generator import GeneratorConfig, check_shapes

ARTIFACT_FORMAT = "cbp-generator/1"


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
        return params_digest(self.params, self.A_DxR, self.z0_R)

    def adapter_params(self) -> dict:
        """Provider-side arrays for `ScoringService(adapter_params=...)` (CBPGenerator)."""
        return {"params": jax.tree.map(jnp.asarray, self.params), "A_DxR": jnp.asarray(self.A_DxR)}

    @property
    def domain(self) -> str | None:
        """The domain of the tasks it was trained on: recorded in `info` when saved, else
        derived from info["tasks"]; "mixed" across domains, None when unknown."""
        if self.info.get("domain"):
            return self.info["domain"]
        from cbp_jax.data.tasks import TASKS

        domains = {TASKS[t].domain for t in self.info.get("tasks", ()) if t in TASKS}
        return domains.pop() if len(domains) == 1 else ("mixed" if domains else None)

    def release(self) -> CBPRelease:
        return CBPRelease(
            self.cfg.task_dims,
            np.asarray(self.z0_R, np.float32),
            self.generator_id,
            str(self.model.get("name", "")),
            tuple(self.info.get("tasks", ())),
            self.domain,
        )


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
