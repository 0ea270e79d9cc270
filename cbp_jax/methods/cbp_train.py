"""CBP-Tuning stage 1, provider side: train the prompt generator G and z0 (docs/methods.md, CBP).

With the LLM frozen (gradients flow through it, its weights get none), minimise the answer's
cross-entropy over one domain's tasks (loss and optimiser: stage1_step.py; batches:
stage1_data.py) under the one training loop (`cbp_jax.loop`): an Orbax checkpoint every
`checkpoint_every` steps and at the end, a log line per step; a killed run resumes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.loop import LoopState, run_loop
from cbp_jax.methods.stage1_data import (
    Stage1Config,
    TrainTask,
    candidates,
    load_train_tasks,
    make_batch,
)
from cbp_jax.methods.stage1_step import make_schedule, train_step_fn
from cbp_jax.model.fingerprint import check_model, model_fingerprint
from cbp_jax.prompts.artifact import GeneratorArtifact, save_generator
from cbp_jax.prompts.generator import GeneratorConfig, init_generator


@dataclasses.dataclass
class Stage1Result:
    artifact: GeneratorArtifact
    history: list[dict]


def _jsonable(x):
    return json.loads(json.dumps(x))


def _initial_state(model, cfg: Stage1Config, gen_cfg: GeneratorConfig):
    key_gen = jax.random.key(cfg.seed)  # init_generator splits it into A, L_D, L_U, ids keys
    state = init_generator(key_gen, gen_cfg, model.params["embed"])
    if cfg.task_vectors:
        z = {"z_TxR": jnp.zeros((len(cfg.tasks), gen_cfg.task_dims), jnp.float32)}
    else:
        z = {"z0_R": jnp.zeros((gen_cfg.task_dims,), jnp.float32)}
    trainable = {"gen": state["params"], **z}
    return trainable, state["A_DxR"]


def train_generator(
    model,
    cfg: Stage1Config,
    gen_cfg: GeneratorConfig | None = None,
    *,
    tasks: Sequence[TrainTask] | None = None,
    run_dir: str | pathlib.Path | None = None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> Stage1Result:
    """Train G and z0 on `model` (a LoadedModel, kept frozen); returns the artifact.

    tasks: the training tasks; default `load_train_tasks(cfg.tasks)` (train pools only).
      If given, their names must equal cfg.tasks (the config is the run's record).
    run_dir: Orbax checkpoints and log.jsonl; an existing run there resumes (its config and
      model must match); the finished generator is also saved to run_dir/generator.
    on_step(step, metrics): called after every step (1-based).
    """
    gen_cfg = gen_cfg or GeneratorConfig(hidden_size=model.cfg.hidden_size)
    if gen_cfg.hidden_size != model.cfg.hidden_size:
        raise ValueError(
            f"GeneratorConfig.hidden_size {gen_cfg.hidden_size} != model hidden size "
            f"{model.cfg.hidden_size}"
        )
    tasks = load_train_tasks(cfg.tasks) if tasks is None else list(tasks)
    if tuple(t.spec.name for t in tasks) != cfg.tasks:
        raise ValueError(
            f"tasks {[t.spec.name for t in tasks]} do not match Stage1Config.tasks {cfg.tasks}"
        )
    tokenizer = model.tokenizer
    c = candidates(tokenizer, tasks)  # each task's (ids, word mask, class mask) on device
    arrays = (c.ids_NxCxW, c.word_mask_NxCxW, c.class_mask_NxC)
    cands_dev = [tuple(jnp.asarray(x[i]) for x in arrays) for i in range(len(tasks))]
    fingerprint = model_fingerprint(model)
    record = {
        "stage1": dataclasses.asdict(cfg),
        "generator": dataclasses.asdict(gen_cfg),
        "model": fingerprint,
    }
    opt, step_fn = train_step_fn(model.cfg, cfg)
    lr_at = make_schedule(cfg, cfg.learning_rate)
    trainable, A_DxR = _initial_state(model, cfg, gen_cfg)
    tree = {"trainable": trainable, "opt_state": opt.init(trainable), "A_DxR": A_DxR}

    def on_resume(state):
        seen = state.info["record"]
        if any(seen[k] != _jsonable(record[k]) for k in ("stage1", "generator")):
            raise ValueError(f"{run_dir} holds a stage-1 run with another config; use a new dir")
        check_model(seen["model"], fingerprint, what="stage-1 checkpoint")

    def step(state):
        start = time.perf_counter()
        task_i, tokens, mask, labels = make_batch(cfg, tokenizer, tasks, state.step)
        t = state.tree
        trainable, opt_state, metrics = step_fn(
            t["trainable"], t["opt_state"], t["A_DxR"], model.params, jnp.asarray(tokens),
            jnp.asarray(mask), cands_dev[task_i], jnp.asarray(labels),
            jnp.asarray(task_i, jnp.int32),
        )  # fmt: skip
        row = {
            "step": state.step + 1,
            "task": tasks[task_i].spec.name,
            "width": int(tokens.shape[1]),
            "lr": float(lr_at(state.step)),
            **{k: float(v) for k, v in metrics.items()},
            "seconds": time.perf_counter() - start,
        }
        tree = {**t, "trainable": trainable, "opt_state": opt_state}
        return state.replace(tree=tree, step=state.step + 1), [row]

    state, history, _ = run_loop(
        step, LoopState(tree, 0, {"record": record}), cfg.steps, run_dir=run_dir,
        every=cfg.checkpoint_every, on_resume=on_resume, on_step=on_step, desc="CBP stage 1",
        postfix=("loss", "task"), progress=progress,
    )  # fmt: skip
    trainable, A_DxR, step = state.tree["trainable"], state.tree["A_DxR"], state.step
    info = {"tasks": list(cfg.tasks), "steps": step, "stage1": record["stage1"]}
    if cfg.task_vectors:  # z0 for an unseen task: the mean of the tasks' vectors
        z_TxR = np.asarray(trainable["z_TxR"])
        z0_R = z_TxR.mean(axis=0)
        info["task_vectors"] = {t: z.tolist() for t, z in zip(cfg.tasks, z_TxR, strict=True)}
    else:
        z0_R = np.asarray(trainable["z0_R"])
    gen_params = jax.tree.map(np.asarray, trainable["gen"])
    artifact = GeneratorArtifact(gen_cfg, gen_params, np.asarray(A_DxR), z0_R, fingerprint, info)
    if run_dir is not None:
        save_generator(pathlib.Path(run_dir) / "generator", artifact)
    return Stage1Result(artifact, history)
