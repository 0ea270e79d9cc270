"""CBP-Tuning stage 1, provider side: train the prompt generator G and z0 (METHODS.md, CBP).

With the LLM frozen (gradients flow through it, its weights get none), minimise the
cross-entropy of the answer over several tasks of one domain:

    min_{G, z0}  E_{task, (X, y)}  CE(softmax_c s_c(X), y),
    s_c(X) = logsumexp_{w in words(c)} log softmax_V(LLM([G(X, z0); Emb(X)]))[w]

(the same class scores the user computes in stage 2 from the service's log-probs).

Data: only the tasks' TRAIN pools (`train_pool`), never their test pools. Step s draws its
task and batch from numpy's PCG64 seeded with (seed, s), so a batch is a pure function of
(seed, step) and a resumed run sees exactly the batches the killed one would have.
Each batch is rendered, tokenized (keeping the last `max_len` tokens, where the answer slot
is) and left-padded to a multiple of `pad_to`; candidate ids are padded to one C x W for all
tasks (masked), so the number of compiled shapes is at most max_len / pad_to.

Optimiser: global-norm clipping, then AdamW (decay on kernels only) with linear warmup and
a cosine (to 10%) or constant schedule; z0 has its own learning rate (it lives on the
N(0, I) scale, the generator's weights on the embedding scale). An Orbax checkpoint
(generator params, z0, A, optimiser state, step) is written every `checkpoint_every` steps
and at the end; a JSONL line per step goes to run_dir/log.jsonl.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from cbp_jax.ckpt import Checkpointer, StepLog
from cbp_jax.data.batching import candidate_ids, encode, left_pad
from cbp_jax.data.spec import TaskSpec
from cbp_jax.methods.losses import accuracy, cross_entropy
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.llama import forward, mean_pooled_embeddings
from cbp_jax.prompts.generator import (
    GeneratorArtifact,
    GeneratorConfig,
    check_model,
    generator_apply,
    init_generator,
    model_fingerprint,
    save_generator,
)

COMMONSENSE = ("boolq", "piqa", "copa", "arc_easy", "arc_challenge")
SAMPLING = ("proportional", "uniform", "round_robin")
SCHEDULES = ("cosine", "constant")
NEG = -1e9  # score of a padded (absent) class


@dataclasses.dataclass(frozen=True)
class Stage1Config:
    """Stage-1 training. tasks: registry names (one domain); steps: optimiser steps;
    batch_size: examples per step (one task per step); sampling: how the step's task is
    picked (proportional to train-pool size, uniform, or round_robin); learning_rate /
    z0_learning_rate: peak AdamW rates of G and of z0; warmup: linear warmup steps;
    schedule: "cosine" (to 10% at the end) or "constant"; clip_norm: global-norm clip;
    max_len: tokens kept per input (from the end); pad_to: padding multiple (bounds
    recompiles); checkpoint_every: steps between Orbax checkpoints; task_vectors: train one
    vector z_t per task (each step uses its task's) instead of one shared z0, and release
    their mean as z0 (the start for a task the generator never saw)."""

    tasks: tuple[str, ...] = COMMONSENSE
    steps: int = 1000
    batch_size: int = 8
    sampling: str = "proportional"
    learning_rate: float = 1e-3
    z0_learning_rate: float = 1e-2
    weight_decay: float = 0.01
    warmup: int = 50
    schedule: str = "cosine"
    clip_norm: float = 1.0
    score_reduce: str = "logsumexp"
    max_len: int = 256
    pad_to: int = 16
    checkpoint_every: int = 50
    task_vectors: bool = False
    seed: int = 0

    def __post_init__(self):
        tasks = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        if not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise ValueError(f"Stage1Config.tasks must be non-empty task names, got {tasks!r}")
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"Stage1Config.tasks has duplicates: {tasks}")
        for name in ("steps", "batch_size", "max_len", "pad_to", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Stage1Config.{name} must be a positive int, got {value!r}")
        if not isinstance(self.warmup, int) or not 0 <= self.warmup < self.steps:
            raise ValueError(f"Stage1Config.warmup must be in [0, steps), got {self.warmup}")
        if not (self.learning_rate > 0 and self.z0_learning_rate >= 0 and self.clip_norm > 0):
            raise ValueError("learning rates and clip_norm must be positive (z0's may be 0)")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")
        if self.sampling not in SAMPLING:
            raise ValueError(f"unknown sampling {self.sampling!r}; known: {SAMPLING}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; known: {SCHEDULES}")
        if self.score_reduce not in ("logsumexp", "mean"):
            raise ValueError(f"unknown score_reduce {self.score_reduce!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Stage1Config.seed must be an int >= 0, got {self.seed!r}")


@dataclasses.dataclass(frozen=True)
class TrainTask:
    """One stage-1 task: its spec and the examples G may train on (its train pool)."""

    spec: TaskSpec
    examples: Sequence[dict]

    def __post_init__(self):
        if not self.examples:
            raise ValueError(f"task {self.spec.name}: no training examples")
        bad = [
            ex.get("label") for ex in self.examples if not 0 <= ex["label"] < self.spec.num_classes
        ]
        if bad:
            raise ValueError(f"task {self.spec.name}: labels out of range, e.g. {bad[0]!r}")


def load_train_tasks(names: Sequence[str]) -> list[TrainTask]:
    """Specs and TRAIN pools of registry tasks (unknown names raise KeyError)."""
    from cbp_jax.data.splits import train_pool
    from cbp_jax.data.tasks import get_task

    specs = [get_task(n) for n in names]  # fail on an unknown name before loading any data
    return [TrainTask(spec, train_pool(n)) for spec, n in zip(specs, names, strict=True)]


@dataclasses.dataclass
class Stage1Result:
    artifact: GeneratorArtifact
    history: list[dict]


# ---------------------------------------------------------------------------- batches


@dataclasses.dataclass(frozen=True)
class _Candidates:
    """All tasks' candidate ids padded to one C x W, with word and class masks."""

    ids_NxCxW: np.ndarray
    word_mask_NxCxW: np.ndarray
    class_mask_NxC: np.ndarray


def _candidates(tokenizer, tasks: Sequence[TrainTask]) -> _Candidates:
    per_task = [candidate_ids(tokenizer, t.spec.label_words) for t in tasks]
    c = max(x.shape[0] for x in per_task)
    w = max(x.shape[1] for x in per_task)
    ids = np.zeros((len(tasks), c, w), np.int32)
    word_mask = np.zeros((len(tasks), c, w), bool)
    class_mask = np.zeros((len(tasks), c), bool)
    for i, x in enumerate(per_task):
        ids[i, : x.shape[0], : x.shape[1]] = x
        word_mask[i, : x.shape[0], : x.shape[1]] = True
        class_mask[i, : x.shape[0]] = True
    word_mask[:, :, 0] = True  # an absent class scores token 0 (finite), then gets NEG
    return _Candidates(ids, word_mask, class_mask)


def batch_plan(cfg: Stage1Config, pool_sizes: Sequence[int], step: int) -> tuple[int, np.ndarray]:
    """(task index, example indices) of a step: a pure function of (seed, step)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, step]))
    sizes = np.asarray(pool_sizes, np.float64)
    if cfg.sampling == "round_robin":
        task = step % len(sizes)
    elif cfg.sampling == "uniform":
        task = int(rng.integers(len(sizes)))
    else:
        task = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
    n = int(sizes[task])
    idx = rng.choice(n, size=cfg.batch_size, replace=n < cfg.batch_size)
    return task, idx


def make_batch(cfg: Stage1Config, tokenizer, tasks: Sequence[TrainTask], step: int):
    """(task index, tokens_BxS, mask_BxS, labels_B) for a step, left-padded to pad_to."""
    task_i, idx = batch_plan(cfg, [len(t.examples) for t in tasks], step)
    task = tasks[task_i]
    examples = [task.examples[int(i)] for i in idx]
    seqs = encode(tokenizer, [task.spec.render(ex) for ex in examples], max_len=cfg.max_len)
    tokens, mask = left_pad(seqs, tokenizer.pad_token_id or 0, cfg.pad_to)
    labels = np.array([ex["label"] for ex in examples], np.int32)
    return task_i, tokens, mask, labels


# ---------------------------------------------------------------------------- the step


def task_vector(trainable, task_i):
    """The z of a step: the shared z0_R, or row task_i of the per-task z_TxR."""
    return trainable["z0_R"] if "z0_R" in trainable else trainable["z_TxR"][task_i]


def stage1_scores(
    trainable, A_DxR, model_params, cfg: LlamaConfig, tokens_BxS, mask_BxS, cands, reduce, task_i=0
):
    """Class scores B x C with the generator's prompt from the step's z (padded classes at
    NEG)."""
    ids_CxW, word_mask_CxW, class_mask_C = cands
    pooled_BxD = mean_pooled_embeddings(model_params, tokens_BxS, mask_BxS)
    z_R = task_vector(trainable, task_i)
    prompt_BxTxD = generator_apply(trainable["gen"], A_DxR, pooled_BxD, z_R)
    logits_BxV = forward(model_params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt_BxTxD).logits
    logp_BxCxW = jax.nn.log_softmax(logits_BxV, axis=-1)[:, ids_CxW]
    if reduce == "logsumexp":
        scores = jax.nn.logsumexp(logp_BxCxW, axis=-1, where=word_mask_CxW)
    else:
        m = word_mask_CxW.astype(jnp.float32)
        scores = (logp_BxCxW * m).sum(-1) / jnp.maximum(m.sum(-1), 1.0)
    return jnp.where(class_mask_C, scores, NEG)


def make_schedule(cfg: Stage1Config, peak: float):
    """Linear warmup from 0 over `warmup` steps, then cosine to 10% or constant."""
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, cfg.steps - cfg.warmup, alpha=0.1)
    else:
        main = optax.constant_schedule(peak)
    if cfg.warmup == 0:
        return main
    warm = optax.linear_schedule(0.0, peak, cfg.warmup)
    return optax.join_schedules([warm, main], [cfg.warmup])


def make_optimizer(cfg: Stage1Config) -> optax.GradientTransformation:
    def decay_mask(tree):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: any(getattr(p, "key", None) == "kernel" for p in path), tree
        )

    gen = optax.adamw(
        make_schedule(cfg, cfg.learning_rate), weight_decay=cfg.weight_decay, mask=decay_mask
    )
    z0 = optax.adam(make_schedule(cfg, cfg.z0_learning_rate))
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.multi_transform(
            {"gen": gen, "z0": z0},
            {"gen": "gen", ("z_TxR" if cfg.task_vectors else "z0_R"): "z0"},
        ),
    )


@functools.lru_cache(maxsize=8)
def _step_fn(model_cfg: LlamaConfig, cfg: Stage1Config):
    """Jitted train step, cached per config so repeated runs reuse the compiled code."""
    opt = make_optimizer(cfg)

    def loss_fn(trainable, A_DxR, model_params, tokens, mask, cands, labels, task_i):
        scores = stage1_scores(
            trainable, A_DxR, model_params, model_cfg, tokens, mask, cands, cfg.score_reduce, task_i
        )
        return cross_entropy(scores, labels), accuracy(scores, labels)

    @jax.jit
    def step(trainable, opt_state, A_DxR, model_params, tokens, mask, cands, labels, task_i):
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, A_DxR, model_params, tokens, mask, cands, labels, task_i
        )
        updates, opt_state = opt.update(grads, opt_state, trainable)
        metrics = {"loss": loss, "acc": acc, "grad_norm": optax.tree.norm(grads)}
        return optax.apply_updates(trainable, updates), opt_state, metrics

    return opt, step


# ---------------------------------------------------------------------------- the loop


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
    cands = _candidates(tokenizer, tasks)
    cands_dev = [
        tuple(
            jnp.asarray(x[i])
            for x in (cands.ids_NxCxW, cands.word_mask_NxCxW, cands.class_mask_NxC)
        )
        for i in range(len(tasks))
    ]
    fingerprint = model_fingerprint(model)
    record = {
        "stage1": dataclasses.asdict(cfg),
        "generator": dataclasses.asdict(gen_cfg),
        "model": fingerprint,
    }
    opt, step_fn = _step_fn(model.cfg, cfg)
    lr_at = make_schedule(cfg, cfg.learning_rate)
    trainable, A_DxR = _initial_state(model, cfg, gen_cfg)
    opt_state = opt.init(trainable)
    step = 0
    ckpt = Checkpointer(run_dir) if run_dir is not None else None
    if ckpt is not None and ckpt.latest_step() is not None:
        target = {"trainable": trainable, "opt_state": opt_state, "A_DxR": A_DxR}
        state, meta = ckpt.restore(target)
        if meta["record"]["stage1"] != _jsonable(record["stage1"]) or meta["record"][
            "generator"
        ] != _jsonable(record["generator"]):
            raise ValueError(f"{run_dir} holds a stage-1 run with another config; use a new dir")
        check_model(meta["record"]["model"], fingerprint, what="stage-1 checkpoint")
        trainable, opt_state, A_DxR = state["trainable"], state["opt_state"], state["A_DxR"]
        step = meta["step"]
    log = StepLog(run_dir, step)

    def save():
        if ckpt is not None:
            state = {"trainable": trainable, "opt_state": opt_state, "A_DxR": A_DxR}
            ckpt.save(step, state, {"step": step, "record": record})

    bar = tqdm(total=cfg.steps, initial=step, desc="CBP stage 1", disable=not progress)
    try:
        while step < cfg.steps:
            start = time.perf_counter()
            task_i, tokens, mask, labels = make_batch(cfg, tokenizer, tasks, step)
            trainable, opt_state, metrics = step_fn(
                trainable,
                opt_state,
                A_DxR,
                model.params,
                jnp.asarray(tokens),
                jnp.asarray(mask),
                cands_dev[task_i],
                jnp.asarray(labels),
                jnp.asarray(task_i, jnp.int32),
            )
            step += 1
            row = {
                "step": step,
                "task": tasks[task_i].spec.name,
                "width": int(tokens.shape[1]),
                "lr": float(lr_at(step - 1)),
                **{k: float(v) for k, v in metrics.items()},
                "seconds": time.perf_counter() - start,
            }
            log.append(row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save()
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", task=row["task"])
            if on_step is not None:
                on_step(step, row)
    finally:
        bar.close()
        log.close()
        if ckpt is not None:
            ckpt.close()
    info = {"tasks": list(cfg.tasks), "steps": step, "stage1": record["stage1"]}
    if cfg.task_vectors:  # z0 for an unseen task: the mean of the tasks' vectors
        z_TxR = np.asarray(trainable["z_TxR"])
        z0_R = z_TxR.mean(axis=0)
        info["task_vectors"] = {t: z.tolist() for t, z in zip(cfg.tasks, z_TxR, strict=True)}
    else:
        z0_R = np.asarray(trainable["z0_R"])
    artifact = GeneratorArtifact(
        gen_cfg,
        jax.tree.map(np.asarray, trainable["gen"]),
        np.asarray(A_DxR),
        z0_R,
        fingerprint,
        info,
    )
    if run_dir is not None:
        save_generator(pathlib.Path(run_dir) / "generator", artifact)
    return Stage1Result(artifact, log.history)
