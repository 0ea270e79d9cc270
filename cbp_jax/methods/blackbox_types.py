"""The black-box engine's config, parameterisation and result types, and its dev rule.

`BlackBoxConfig` (budget in API calls: one candidate on one batch, BBT's unit; see
blackbox.py), `Parameterization` (how z becomes a request payload, user side),
`BlackBoxResult` (with the calls ledger), `replaces` (when a new ES mean is kept on dev).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from cbp_jax.methods.losses import get_loss


@dataclasses.dataclass(frozen=True)
class BlackBoxConfig:
    strategy: str = "lazy_cma"
    population: int = 20
    sigma0: float = 1.0
    budget: int = 8000  # API calls (one candidate on one batch), train and dev together
    loss: str = "ce"
    score_reduce: str = "logsumexp"
    chunk: int = 5  # generations per compiled call; dev eval, log and checkpoint after each
    buckets: int = 4  # length buckets of the train/dev sets (less padding, same calls)
    eval_init: bool = True  # score the start point on dev first, so it can be the one kept
    dev_margin: int = 0  # dev examples a new ES mean must gain to be kept (`replaces`)
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.dev_margin, int) or self.dev_margin < 0:
            raise ValueError(f"dev_margin must be an int >= 0 (examples), got {self.dev_margin!r}")
        if self.population < 2:
            raise ValueError(f"population must be >= 2, got {self.population}")
        if self.sigma0 <= 0 or self.budget <= 0 or self.chunk <= 0 or self.buckets <= 0:
            raise ValueError("sigma0, budget and chunk must be positive")
        get_loss(self.loss)


@dataclasses.dataclass(frozen=True)
class Parameterization:
    """How z becomes a request payload, on the user side.

    payload_fn(payload_params, z_PxR) -> payload (pure, jittable); kind: request kind.
    """

    kind: str
    num_dims: int
    payload_fn: Callable[[Any, jax.Array], jax.Array]
    payload_params: Any = None
    init_mean: np.ndarray | None = None


@dataclasses.dataclass
class BlackBoxResult:
    best_z: np.ndarray
    best_dev_acc: float
    best_dev_loss: float
    final_mean: np.ndarray
    history: list[dict]
    calls_used: int  # all API calls of the run, train and dev
    generations: int
    layer: int | None = None  # BBTv2: the layer this phase tuned
    start_dev_acc: float | None = None  # the start point's dev accuracy (eval_init)
    dev_calls: int = 0  # of calls_used, the dev evaluations (one call each)
    examples_scored: int = 0  # candidate x example pairs scored, train and dev
    tokens_scored: int = 0  # candidate x real text tokens scored, train and dev
    resumed_at_generation: int = 0  # > 0: this process resumed a checkpoint at that generation


def replaces(dev_acc: float, dev_loss: float, best: dict, n_dev: int, margin: int) -> bool:
    """Whether a new ES mean (dev_acc, dev_loss) replaces the kept `best` ({"acc", "loss"}):
    more than `margin` more of the n_dev dev examples right; at margin 0, ties on accuracy
    go to the lower dev loss."""
    if best["acc"] < 0:  # nothing kept yet (no start evaluation)
        return True
    gain = round((dev_acc - best["acc"]) * n_dev)
    if margin > 0:
        return gain > margin
    return (dev_acc, -dev_loss) > (best["acc"], -best["loss"])
