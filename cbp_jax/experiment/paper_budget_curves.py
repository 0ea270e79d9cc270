"""The paper-budget curves: test accuracy of the kept prompt against API calls, from records.

One PNG per task: BBT's and CBP's mean over the finished seeds with a min-max band, and
the starting points (zero-shot, CBP z0, the majority class) as horizontal lines.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np

from cbp_jax.experiment.paper_budget import LABELS


def curve_plot(cfg, task: str, recs: dict, path: pathlib.Path) -> bool:
    """Test accuracy vs calls for BBT and CBP (mean and min-max band over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    drawn = False
    for col, color in (("bbt", "tab:blue"), ("cbp", "tab:red")):
        curves = [recs[(task, col, s)]["result"].get("curve") or [] for s in cfg.seeds
                  if (task, col, s) in recs]  # fmt: skip
        curves = [c for c in curves if c]
        if not curves:
            continue
        budgets = sorted({p["budget"] for c in curves for p in c})
        acc = np.array([[next((p["test_acc"] for p in c if p["budget"] == b), math.nan)
                         for b in budgets] for c in curves])  # fmt: skip
        mean = np.nanmean(acc, axis=0)
        ax.plot(budgets, 100 * mean, "o-", color=color, label=f"{LABELS[col]} ({len(curves)})")
        ax.fill_between(budgets, 100 * np.nanmin(acc, 0), 100 * np.nanmax(acc, 0),
                        color=color, alpha=0.2)  # fmt: skip
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    refs = (("zero_shot", "test_acc", "zero-shot", ":"), ("cbp_z0", "test_acc", "CBP z0", "--"))
    refs += (("zero_shot", "majority", "majority class", "-."),)
    for col, key, label, style in refs:  # the starting points, means over finished seeds
        runs = [recs[(task, col, s)]["result"] for s in cfg.seeds if (task, col, s) in recs]
        vals = [r["prediction"]["majority_acc"] if key == "majority" else r[key] for r in runs]
        if vals:
            ax.axhline(100 * np.mean(vals), color="gray", ls=style, lw=1, label=label)
    ax.set_xscale("log")
    ticks = sorted({p["budget"] for c in (r["result"].get("curve") or [] for r in recs.values())
                    for p in c})  # fmt: skip
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("API calls (one candidate on the k-shot batch)")
    ax.set_ylabel("test accuracy %")
    ax.set_title(task)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return True
