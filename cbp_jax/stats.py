"""Paired comparison of two methods over tasks and seeds: is A ahead of B beyond the noise?

The sweeps run every method of one seed on the same k-shot sets and test subset, so A - B is
paired per (task, seed). A claim about "the average of a domain" or "held-out tasks"
generalises over tasks, so the unit of the confidence interval is the task (its mean
difference over seeds), a Student t interval over tasks; with a single task the unit falls
back to the seed. Wins, losses and ties count the paired runs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class PairedSummary:
    """mean: mean of the per-unit differences; [lo, hi]: its two-sided t interval at
    `level` (nan with one unit); unit: "task" or "seed"; wins/losses/ties over all pairs."""

    mean: float
    lo: float
    hi: float
    level: float
    unit: str
    n_units: int
    wins: int
    losses: int
    ties: int

    def verdict(self) -> str:
        if math.isnan(self.lo):
            return "no interval (one unit)"
        if self.lo > 0:
            return "ahead"
        if self.hi < 0:
            return "behind"
        return "not distinguishable"

    def describe(self, scale: float = 100.0, digits: int = 1) -> str:
        f = f"{{:+.{digits}f}}"
        text = f"{f.format(scale * self.mean)}"
        if not math.isnan(self.lo):
            text += (
                f", {100 * self.level:.0f}% CI [{f.format(scale * self.lo)}, "
                f"{f.format(scale * self.hi)}] over {self.n_units} {self.unit}s"
            )
        counts = f"{self.wins} wins, {self.losses} losses, {self.ties} ties"
        return f"{text}; {counts}: {self.verdict()}"


def paired_summary(diffs: dict[str, list[float]], level: float = 0.95) -> PairedSummary:
    """diffs: task -> per-seed differences A - B (the same seeds for A and B)."""
    if not diffs or any(len(v) == 0 for v in diffs.values()):
        raise ValueError("paired_summary needs at least one difference per task")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    flat = np.concatenate([np.asarray(v, dtype=float) for v in diffs.values()])
    if not np.isfinite(flat).all():
        raise ValueError("paired_summary: a difference is NaN or infinite")
    if len(diffs) > 1:
        unit, values = "task", np.array([np.mean(v) for v in diffs.values()])
    else:
        unit, values = "seed", flat
    mean = float(np.mean(values))
    lo = hi = float("nan")
    if len(values) > 1:
        half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * np.std(values, ddof=1)
        half /= math.sqrt(len(values))
        lo, hi = mean - half, mean + half
    wins, losses, ties = (int(np.sum(c)) for c in (flat > 0, flat < 0, flat == 0))
    return PairedSummary(mean, lo, hi, level, unit, len(values), wins, losses, ties)
