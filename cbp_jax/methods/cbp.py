"""CBP-Tuning stage 2, user side (docs/methods.md, CBP-Tuning).

The user gets only the provider's release (`contract.CBPRelease`: r, z0 and an id; stage 1
is cbp_train.py). `customize`: CMA-ES over z in R^r from z0 on the k-shot train set with dev
selection, through the service's log-probs only (the engine in blackbox.py, the payload z
itself). Its result, one vector z, is saved with `save_task_vector` (Orbax + JSON meta
naming the task and generator) and scored with `task_vector_accuracy`. A generator is
meant for tasks of the one domain stage 1 trained it on (`check_domain`).
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
    """Stage 2: CMA-ES over z from z0 within `cfg.budget` API calls; `best_z` is the result.
    With `progress`, prints the generations run and their calls. run_dir (an interrupted run
    there resumes) and `engine_kwargs` (e.g. milestones) go to `run_blackbox`."""
    if "task_vector" not in service.public_info().accepted_kinds:
        raise ValueError("this service does not serve a CBP generator (no 'task_vector' kind)")
    param = cbp_parameterization(release)
    res = run_blackbox(
        service, param, train, dev, cfg, run_dir=run_dir, progress=progress, **engine_kwargs
    )
    if progress:
        print(stage2_summary(res, cfg), flush=True)
    return res


class CrossDomainError(ValueError):
    """A generator of one domain was about to customize a task of another."""


def domain_mismatch(generator_domain: str | None, task) -> str | None:
    """A sentence saying how the generator's domain and the task's differ, or None."""
    if generator_domain == task.domain:
        return None
    known = generator_domain or "an unrecorded domain"
    return (
        f"the generator was trained on {known} tasks, but task {task.name!r} has domain "
        f'{task.domain!r}: its z0 and prompts were not made for this task (set "domain" '
        "in your task config if it belongs to the generator's domain)"
    )


def check_domain(generator_domain: str | None, task, allow_cross_domain: bool) -> str | None:
    """Raise `CrossDomainError` on a mismatch unless allowed; return the warning if allowed."""
    problem = domain_mismatch(generator_domain, task)
    if problem and not allow_cross_domain:
        raise CrossDomainError(problem + "; pass --allow-cross-domain to run it anyway")
    return problem


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
    preds = task_vector_predict(service, tokenizer, task, examples, z_R, task_dims, **kwargs)
    return float((preds == np.array([ex["label"] for ex in examples])).mean())


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
