"""Baselines table: zero-shot, BBT, BBTv2 and white-box prompt tuning, mean/std over seeds.

Runs `cbp_jax.run.run` for every (method, seed) on one task (each run resumes from its
checkpoint if interrupted, and a finished run is read back from its result.json), then
writes `experiments/results/bbt.md` (with the exact command) and a learning-curve plot of
BBT's dev/train loss against API calls.

    python experiments/bbt_table.py --task sst2 --seeds 13,42,87 --budget 16000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import sys

import numpy as np

from cbp_jax.run import RunConfig, run

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
METHODS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning")
LABELS = {
    "zero_shot": "zero-shot",
    "bbt": "BBT",
    "bbtv2": "BBTv2",
    "prompt_tuning": "white-box prompt tuning",
}


@dataclasses.dataclass(frozen=True)
class TableConfig:
    task: str = "sst2"
    seeds: tuple[int, ...] = (13, 42, 87)
    methods: tuple[str, ...] = METHODS
    budget: int = 16000
    prompt_len: int = 10
    bbtv2_layers: str = "0,6,12,18,24"
    test_size: int = 436
    out: str = "checkpoints/runs"

    def __post_init__(self):
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}")


def one(cfg: TableConfig, method: str, seed: int) -> dict:
    rc = RunConfig(
        task=cfg.task,
        method=method,
        seed=seed,
        budget=cfg.budget,
        prompt_len=cfg.prompt_len,
        bbtv2_layers=cfg.bbtv2_layers,
        test_size=cfg.test_size,
        out=cfg.out,
    )
    done = rc.run_dir / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    return run(rc)


def plot(results: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, res in results.get("bbt", {}).items():
        hist = res["history"]
        ax.plot(
            [h["calls"] for h in hist],
            [h["loss_mean"] for h in hist],
            alpha=0.5,
            label=f"BBT train loss (population mean), seed {seed}",
        )
        dev = [h for h in hist if "dev_loss" in h]
        ax.plot(
            [h["calls"] for h in dev],
            [h["dev_loss"] for h in dev],
            "o-",
            label=f"BBT dev loss (ES mean), seed {seed}",
        )
    ax.set_xlabel("API calls")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--task", default=TableConfig.task)
    p.add_argument("--seeds", default="13,42,87")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budget", type=int, default=TableConfig.budget)
    p.add_argument("--prompt-len", type=int, default=TableConfig.prompt_len)
    p.add_argument("--out", default=TableConfig.out)
    a = p.parse_args(argv)
    cfg = TableConfig(
        task=a.task,
        seeds=tuple(int(s) for s in a.seeds.split(",")),
        methods=tuple(a.methods.split(",")),
        budget=a.budget,
        prompt_len=a.prompt_len,
        out=a.out,
    )
    results = {m: {s: one(cfg, m, s) for s in cfg.seeds} for m in cfg.methods}
    command = "python experiments/bbt_table.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        f"# Baselines on {cfg.task} (default model smollm2-135m, 16 shots per class)",
        "",
        f"Command: `{command}`",
        "",
        f"Budget {cfg.budget} API calls per black-box run (one call = one candidate on "
        f"one example, train and dev alike); prompt length {cfg.prompt_len}; BBT/BBTv2 "
        f"d=500, population 20, lazy CMA-ES, sigma0 1; BBTv2 layers {cfg.bbtv2_layers} "
        f"in turn. Test: {cfg.test_size} examples of the test pool, disjoint from the "
        "k-shot train/dev sets.",
        "",
        "| method | test acc mean | std | per seed | dev acc mean | API calls | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in cfg.methods:
        accs = np.array([results[m][s]["test_acc"] for s in cfg.seeds])
        devs = [results[m][s].get("dev_acc") for s in cfg.seeds]
        dev = f"{np.mean(devs):.4f}" if all(d is not None for d in devs) else "-"
        calls = int(np.mean([results[m][s].get("calls", 0) for s in cfg.seeds]))
        secs = np.mean([results[m][s]["seconds"] for s in cfg.seeds])
        per = ", ".join(f"{x:.3f}" for x in accs)
        lines.append(
            f"| {LABELS[m]} | {accs.mean():.4f} | {accs.std(ddof=1):.4f} | {per} | {dev} "
            f"| {calls} | {secs:.0f} |"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "bbt" in results:
        plot(results, RESULTS / f"bbt_{cfg.task}_curve.png")
        lines += ["", f"Learning curve: `bbt_{cfg.task}_curve.png`."]
    (RESULTS / "bbt.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
