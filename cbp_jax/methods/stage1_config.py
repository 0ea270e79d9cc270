"""CBP-Tuning stage 1's configuration (provider side), apart from the loop that uses it.

Its own module so that the batches (stage1_data.py), the step (stage1_step.py) and the loop
(cbp_train.py) all depend on it and not on each other.
"""

from __future__ import annotations

import dataclasses

COMMONSENSE = ("boolq", "piqa", "copa", "arc_easy", "arc_challenge")
SAMPLING = ("proportional", "uniform", "round_robin")
SCHEDULES = ("cosine", "constant")


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
    their mean as z0 (the start for a task the generator never saw); permute_options:
    shuffle each multiple-choice example's options (label follows) so G cannot learn the
    training tasks' answer-letter prior (stage1_data.permute_options)."""

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
    permute_options: bool = False
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
