"""The paper-budget curves: the kept prompt's score against API calls, from records.

One PNG per task, two panels: test accuracy and balanced accuracy (mean recall per class).
Each shows BBT's and CBP's mean over the finished seeds with a min-max band, and the
starting points (zero-shot, CBP z0, the majority class) as horizontal lines. Milestones
recorded before balanced accuracy was kept have none, so the balanced panel draws only the
seeds whose curves carry it (the legend gives the count) and says so when none does.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from cbp_jax.methods.evaluate import balanced_accuracy
from studies.common import pyplot

PANELS = (("test_acc", "test accuracy %"), ("balanced_acc", "balanced accuracy %"))


def balanced(result: dict) -> float | None:
    """Balanced test accuracy from the record's confusion matrix (None if it has none)."""
    confusion = result.get("prediction", {}).get("confusion")
    return None if confusion is None else balanced_accuracy(confusion)


def majority_balanced(result: dict) -> float:
    """What always answering one class scores balanced: 1 / classes in the test set."""
    return 1.0 / sum(1 for n in result["prediction"]["label_counts"] if n)


def _reference(result: dict, col: str, key: str) -> float | None:
    """A starting point's score: `col` is a column, or "majority" (on zero-shot's record)."""
    if col == "majority":
        majority = result["prediction"]["majority_acc"]
        return majority if key == "test_acc" else majority_balanced(result)
    return result["test_acc"] if key == "test_acc" else balanced(result)


# the search columns drawn against calls, with their legend names (first protocol lighter)
CURVES = (
    ("bbt", "lightsteelblue"),
    ("cbp", "lightsalmon"),
    ("published/bbt", "tab:blue"),
    ("published/bbtv2", "tab:cyan"),
    ("published/cbp", "tab:red"),
    ("published/cbp_held_out", "tab:purple"),
)
SHORT = {
    "bbt": "BBT, first protocol",
    "cbp": "CBP, first protocol",
    "published/bbt": "BBT",
    "published/bbtv2": "BBTv2",
    "published/cbp": "CBP",
    "published/cbp_held_out": "CBP held out",
}


def _panel(ax, cfg, task: str, recs: dict, key: str) -> bool:
    """One measure against calls on `ax`; whether any search curve carried it."""
    drawn = False
    for col, color in CURVES:
        curves = [recs[(task, col, s)]["result"].get("curve") or [] for s in cfg.seeds
                  if (task, col, s) in recs]  # fmt: skip
        curves = [[p for p in c if p.get(key) is not None] for c in curves]
        curves = [c for c in curves if c]
        if not curves:
            continue
        budgets = sorted({p["budget"] for c in curves for p in c})
        acc = np.array([[next((p[key] for p in c if p["budget"] == b), math.nan)
                         for b in budgets] for c in curves])  # fmt: skip
        mean = np.nanmean(acc, axis=0)
        ax.plot(budgets, 100 * mean, "o-", color=color, label=f"{SHORT[col]} ({len(curves)})")
        ax.fill_between(budgets, 100 * np.nanmin(acc, 0), 100 * np.nanmax(acc, 0),
                        color=color, alpha=0.2)  # fmt: skip
        drawn = True
    refs = (("zero_shot", "zero_shot", "zero-shot", ":"), ("cbp_z0", "cbp_z0", "CBP z0", "--"))
    refs += (("zero_shot", "majority", "majority class", "-."),)
    for col, what, label, style in refs:  # the starting points, means over finished seeds
        runs = [recs[(task, col, s)]["result"] for s in cfg.seeds if (task, col, s) in recs]
        vals = [v for v in (_reference(r, what, key) for r in runs) if v is not None]
        if vals:
            ax.axhline(100 * np.mean(vals), color="gray", ls=style, lw=1, label=label)
    if not drawn:
        ax.text(0.5, 0.5, "no milestone recorded this yet", transform=ax.transAxes,
                ha="center", fontsize=8, color="gray")  # fmt: skip
    return drawn


def curve_plot(cfg, task: str, recs: dict, path: pathlib.Path) -> bool:
    """Both measures vs calls for BBT and CBP (mean and min-max band over seeds); False
    (nothing written) when no search of `task` has a curve."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    drawn = [_panel(ax, cfg, task, recs, key) for ax, (key, _) in zip(axes, PANELS, strict=True)]
    if not drawn[0]:
        plt.close(fig)
        return False
    ticks = sorted({p["budget"] for c in (r["result"].get("curve") or [] for r in recs.values())
                    for p in c})  # fmt: skip
    for ax, (_, ylabel) in zip(axes, PANELS, strict=True):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("API calls (one candidate on the k-shot batch)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle(task)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True
