"""CBP-Tuning stage 2, user side (docs/methods.md, CBP-Tuning).

The provider's side is elsewhere: stage 1 (training G and z0) is `train_generator` in
cbp_train.py, the generator is saved and loaded by `prompts.artifact`, and served by
`service.provider.cbp_service`. The user gets only the release (`contract.CBPRelease`:
r, z0 and an id).

Stage 2 (`customize`): CMA-ES over z in R^r, started at z0, on the user's k-shot
train set with dev-set selection, through the service's log-probs only (the black-box
engine in blackbox.py; the payload is z itself). The result per task is one vector z (r
floats), saved with `save_task_vector` (Orbax + JSON meta naming the task and generator)
and scored with `task_vector_accuracy`.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from cbp_jax.ckpt import read_meta, restore_arrays, save_arrays
from cbp_jax.contract import CBPRelease, GeneratorMismatchError
from cbp_jax.data.batching import Inputs
from cbp_jax.methods import evaluate
from cbp_jax.methods.blackbox import BlackBoxConfig, BlackBoxResult, Parameterization, run_blackbox

__all__ = [
    "TaskVector",
    "cbp_parameterization",
    "customize",
    "load_task_vector",
    "save_task_vector",
    "stage2_summary",
    "task_vector_accuracy",
    "task_vector_predict",
]

TASK_VECTOR_FORMAT = "cbp-task-vector/1"


def _as_vector(z_R, task_dims: int) -> np.ndarray:
    z = np.asarray(z_R)
    if z.shape != (task_dims,):
        raise ValueError(f"task vector must have shape ({task_dims},), got {z.shape}")
    if not np.issubdtype(z.dtype, np.floating) or not np.isfinite(z).all():
        raise ValueError("task vector must be finite floats")
    return z.astype(np.float32)


def cbp_parameterization(release: CBPRelease) -> Parameterization:
    """z is the payload itself; CMA-ES starts at z0."""
    return Parameterization(
        kind="task_vector",
        num_dims=release.task_dims,
        payload_fn=lambda _, z_PxR: z_PxR,
        init_mean=release.z0_R,
    )


def customize(
    service,
    release: CBPRelease,
    train: Inputs,
    dev: Inputs,
    cfg: BlackBoxConfig,
    *,
    run_dir: str | pathlib.Path | None = None,
    progress: bool = True,
    **engine_kwargs,
) -> BlackBoxResult:
    """Stage 2: CMA-ES over z from z0 within `cfg.budget` API calls (one call = one
    candidate on the whole k-shot train or dev set; P per generation, 1 per dev evaluation);
    `best_z` is the result. With `progress`, prints the generations run and their calls.

    run_dir: Orbax checkpoint + log of the ES; an interrupted run resumes from it.
    engine_kwargs: passed to `run_blackbox` (e.g. milestones / on_milestone).
    """
    if "task_vector" not in service.public_info().accepted_kinds:
        raise ValueError("this service does not serve a CBP generator (no 'task_vector' kind)")
    param = cbp_parameterization(release)
    res = run_blackbox(
        service, param, train, dev, cfg, run_dir=run_dir, progress=progress, **engine_kwargs
    )
    if progress:
        print(stage2_summary(res, cfg), flush=True)
    return res


def stage2_summary(res: BlackBoxResult, cfg: BlackBoxConfig) -> str:
    """One line: the CMA-ES generations run and the calls they cost, in BBT's unit."""
    return (
        f"CBP stage 2: {res.generations} CMA-ES generations x population {cfg.population} = "
        f"{res.calls_used - res.dev_calls} calls + {res.dev_calls} dev evaluations = "
        f"{res.calls_used} of a {cfg.budget}-call budget (one call = one candidate on the "
        f"whole k-shot set; {res.examples_scored} examples, {res.tokens_scored} tokens scored)"
    )


def task_vector_predict(service, tokenizer, task, examples, z_R, task_dims: int, **kwargs):
    """Predicted classes with one task vector (one "task_vector" request per batch)."""
    z = _as_vector(z_R, task_dims)
    return evaluate.predict(
        service, tokenizer, task, examples, kind="task_vector", payload=z[None], **kwargs
    )


def task_vector_accuracy(service, tokenizer, task, examples, z_R, task_dims: int, **kwargs):
    z = _as_vector(z_R, task_dims)
    return evaluate.accuracy(
        service, tokenizer, task, examples, kind="task_vector", payload=z[None], **kwargs
    )


@dataclasses.dataclass(frozen=True, eq=False)
class TaskVector:
    """A customized task: z (r floats), the task's name, the generator it was tuned for."""

    z_R: np.ndarray
    task: str
    generator_id: str
    meta: dict


def save_task_vector(
    path: str | pathlib.Path,
    z_R,
    *,
    task: str,
    release: CBPRelease,
    extra: dict | None = None,
) -> pathlib.Path:
    """Save z (Orbax) with JSON meta: task, generator id, r and anything in `extra`."""
    z = _as_vector(z_R, release.task_dims)
    if not isinstance(task, str) or not task:
        raise ValueError("task must be a non-empty name")
    meta = {
        "format": TASK_VECTOR_FORMAT,
        "task": task,
        "generator_id": release.generator_id,
        "model_name": release.model_name,
        "task_dims": release.task_dims,
        **(extra or {}),
    }
    return save_arrays(path, {"z_R": z}, meta)


def load_task_vector(
    path: str | pathlib.Path,
    *,
    release: CBPRelease | None = None,
    task: str | None = None,
) -> TaskVector:
    """Load a saved z; with `release` / `task`, raise if it was made for another generator
    or another task."""
    meta = read_meta(path, TASK_VECTOR_FORMAT)
    if release is not None and meta["generator_id"] != release.generator_id:
        raise GeneratorMismatchError(
            f"{path}: task vector was tuned for generator {meta['generator_id']}, "
            f"not {release.generator_id}"
        )
    if task is not None and meta["task"] != task:
        raise ValueError(f"{path}: task vector is for task {meta['task']!r}, not {task!r}")
    r = int(meta["task_dims"])
    z = restore_arrays(path, {"z_R": np.zeros((r,), np.float32)})["z_R"]
    return TaskVector(z, meta["task"], meta["generator_id"], meta)
