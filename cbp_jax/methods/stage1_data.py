"""CBP-Tuning stage 1's config (provider side) and data: training tasks, a seeded batch plan,
padded batches (the step: stage1_step.py; the loop: cbp_train.py).

Only the tasks' TRAIN pools. Step s draws its task and batch from numpy's PCG64 seeded with
(seed, s), so a resumed run sees exactly the batches the killed one would have. A batch is
rendered, tokenized (the last `max_len` tokens, where the answer slot is) and left-padded to
a multiple of `pad_to` (with `permute_options`, multiple-choice options shuffled first);
candidate ids are padded to one C x W for all tasks, so at most max_len / pad_to shapes
compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from cbp_jax.data.batching import candidate_ids, encode, left_pad
from cbp_jax.data.spec import TaskSpec

COMMONSENSE = ("boolq", "piqa", "copa", "arc_easy", "arc_challenge")
SAMPLING = ("proportional", "uniform", "round_robin")
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class Stage1Config:
    """Stage-1 training (one task per step)."""

    tasks: tuple[str, ...] = COMMONSENSE  # registry names, one domain
    steps: int = 1000  # optimiser steps
    batch_size: int = 8  # examples per step
    sampling: str = "proportional"  # a step's task: by train-pool size, uniform, round_robin
    learning_rate: float = 1e-3  # peak AdamW rate of G
    z0_learning_rate: float = 1e-2  # peak rate of z0
    weight_decay: float = 0.01
    warmup: int = 50  # linear warmup steps
    schedule: str = "cosine"  # to 10% at the end, or "constant"
    clip_norm: float = 1.0  # global-norm clip
    score_reduce: str = "logsumexp"
    max_len: int = 256  # tokens kept per input (from the end)
    pad_to: int = 16  # padding multiple (bounds recompiles)
    checkpoint_every: int = 50  # steps between Orbax checkpoints
    # one vector z_t per task (each step uses its task's) instead of one shared z0, and their
    # mean released as z0 (the start for a task the generator never saw)
    task_vectors: bool = False
    permute_options: bool = False  # shuffle multiple-choice options (`permute_options`)
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
        for name, known in (("sampling", SAMPLING), ("schedule", SCHEDULES),
                            ("score_reduce", ("logsumexp", "mean"))):  # fmt: skip
            if getattr(self, name) not in known:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; known: {known}")
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


@dataclasses.dataclass(frozen=True)
class Candidates:
    """All tasks' candidate ids padded to one C x W, with word and class masks."""

    ids_NxCxW: np.ndarray
    word_mask_NxCxW: np.ndarray
    class_mask_NxC: np.ndarray


def candidates(tokenizer, tasks: Sequence[TrainTask]) -> Candidates:
    """Every task's label-word ids in one padded N x C x W array (one compiled shape)."""
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
    return Candidates(ids, word_mask, class_mask)


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


def permute_options(spec: TaskSpec, examples: Sequence[dict], rng: np.random.Generator):
    """Each example with its options in a random order and its label following the right
    option (multiple-choice tasks, `TaskSpec.option_fields`; others come back unchanged).

    A stage-1 augmentation: the letter that names the right answer becomes uniform, so G
    cannot learn the training tasks' answer-position prior (which a task it never saw does
    not share) and has to act on the options' content instead.
    """
    fields = spec.option_fields
    if fields is None:
        return list(examples)
    out = []
    for ex in examples:
        order = rng.permutation(len(fields))  # new position i shows old option order[i]
        new = dict(ex)
        new.update({f: ex[fields[j]] for f, j in zip(fields, order, strict=True)})
        new["label"] = int(np.flatnonzero(order == ex["label"])[0])
        out.append(new)
    return out


def make_batch(cfg: Stage1Config, tokenizer, tasks: Sequence[TrainTask], step: int):
    """(task index, tokens_BxS, mask_BxS, labels_B) for a step, left-padded to pad_to.
    With cfg.permute_options the options are shuffled by a second stream of (seed, step)."""
    task_i, idx = batch_plan(cfg, [len(t.examples) for t in tasks], step)
    task = tasks[task_i]
    examples = [task.examples[int(i)] for i in idx]
    if cfg.permute_options:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, step, 1]))
        examples = permute_options(task.spec, examples, rng)
    seqs = encode(tokenizer, [task.spec.render(ex) for ex in examples], max_len=cfg.max_len)
    tokens, mask = left_pad(seqs, tokenizer.pad_token_id or 0, cfg.pad_to)
    labels = np.array([ex["label"] for ex in examples], np.int32)
    return task_i, tokens, mask, labels
