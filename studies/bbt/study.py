"""Study `bbt`: zero-shot, BBT, BBTv2 and white-box prompt tuning on one task, over seeds.

    cbp-jax study bbt run --task sst2 --seeds 13,42,87 --budget 8000
    cbp-jax study bbt table                 # regenerate table.md from the records

Plans one `cbp_jax.run.RunConfig` per (method, seed) on one task, runs those with no record
in runs.jsonl beside this file (the experiment layer: a run's identity is its config hash;
a changed config is refused, naming the field), and writes table.md and the BBT learning
curve (calls_curve_<task>.png) from the records only. Budget in the papers' unit (one
candidate on the whole k-shot batch). The table's earlier numbers (old per-example unit) are
legacy records in the same file, rendered below any new runs and marked with their unit.
experiments/results/bbt.md links to table.md (an acceptance script reads it there).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import write_table
from cbp_jax.run import LEGACY_STRATEGY, RunConfig, record_defaults
from studies.common import command, header, parser, pyplot

QUESTION = (
    "On sst2 with 16 shots, how do BBT and BBTv2 compare with zero-shot and white-box tuning?"
)
ANSWER = (
    "Legacy runs (old unit, 12000 calls, 3 seeds): zero-shot 0.706, BBT 0.733, BBTv2 0.736, "
    "white-box prompt tuning 0.818; no run in the papers' unit yet"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
# the names the legacy table's text gives its files (before the one layout of studies/README.md)
RENAMED = {
    "bbt.md": "table.md",
    "bbt_runs.jsonl": "runs.jsonl",
    "bbt_sst2_curve.png": "curve_sst2.png",
}
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
    budget: int = 8000  # papers' unit: 400 generations at population 20
    prompt_len: int = 10
    bbtv2_layers: str = "0,6,12,18,24"
    test_size: int = 436
    out: str = "checkpoints/runs"

    def __post_init__(self):
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}")

    def cells(self) -> list[Cell]:
        return [
            Cell(
                f"{self.task}/{m}/seed{s}",
                RunConfig(
                    task=self.task,
                    method=m,
                    seed=s,
                    budget=self.budget,
                    prompt_len=self.prompt_len,
                    bbtv2_layers=self.bbtv2_layers,
                    test_size=self.test_size,
                    out=self.out,
                    strategy=LEGACY_STRATEGY,  # what its committed records ran with
                ),
            )  # fmt: skip
            for m in self.methods
            for s in self.seeds
        ]


def plot(results: dict, path: pathlib.Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, res in results.get("bbt", {}).items():
        hist = res["history"]
        ax.plot([h["calls"] for h in hist], [h["loss_mean"] for h in hist], alpha=0.5,
                label=f"BBT train loss (population mean), seed {seed}")  # fmt: skip
        dev = [h for h in hist if "dev_loss" in h]
        ax.plot([h["calls"] for h in dev], [h["dev_loss"] for h in dev], "o-",
                label=f"BBT dev loss (ES mean), seed {seed}")  # fmt: skip
    ax.set_xlabel("API calls (one candidate on the k-shot batch)")
    ax.set_ylabel("cross-entropy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def report(cfg: TableConfig, records: list[dict], command: str, dest: pathlib.Path) -> str:
    """The new runs' section from their records ("" when none has run)."""
    results: dict[str, dict] = {}
    for rec in records:
        _, m, seed = rec["name"].split("/")
        results.setdefault(m, {})[int(seed[4:])] = rec["result"]
    if not results:
        return ""
    lines = [
        f"# Baselines on {cfg.task} (default model smollm2-135m, 16 shots per class)",
        "",
        f"Command: `{command}`",
        "",
        f"Budget {cfg.budget} API calls per black-box run in the papers' unit (one call = one "
        f"candidate on the whole k-shot batch; dev evaluations counted apart); prompt length "
        f"{cfg.prompt_len}; BBT/BBTv2 d=500, population 20; BBTv2 layers {cfg.bbtv2_layers}. "
        f"Test: {cfg.test_size} examples of the test pool. From `runs.jsonl`.",
        "",
        *header("method", "test acc mean", "std", "per seed", "dev acc mean", "API calls", "s/run"),
    ]
    for m in cfg.methods:
        got = [results[m][s] for s in cfg.seeds if s in results.get(m, {})]
        if not got:
            continue
        accs = np.array([r["test_acc"] for r in got])
        devs = [r.get("dev_acc") for r in got]
        dev = f"{np.mean(devs):.4f}" if all(d is not None for d in devs) else "-"
        calls = int(np.mean([r.get("calls", 0) for r in got]))
        std = f"{accs.std(ddof=1):.4f}" if len(accs) > 1 else "-"
        per = ", ".join(f"{x:.3f}" for x in accs)
        lines.append(f"| {LABELS[m]} | {accs.mean():.4f} | {std} | {per} | {dev} | {calls} "
                     f"| {np.mean([r['seconds'] for r in got]):.0f} |")  # fmt: skip
    if "bbt" in results:
        plot(results, dest / f"calls_curve_{cfg.task}.png")
        lines += ["", f"Learning curve: `calls_curve_{cfg.task}.png`."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = parser(__doc__.splitlines()[0], COMMANDS, RESULTS)
    p.add_argument("--task", default=TableConfig.task)
    p.add_argument("--seeds", default="13,42,87")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--budget", type=int, default=TableConfig.budget)
    p.add_argument("--prompt-len", type=int, default=TableConfig.prompt_len)
    p.add_argument("--out", default=TableConfig.out)
    a = p.parse_args(argv)
    cfg = TableConfig(task=a.task, seeds=tuple(int(s) for s in a.seeds.split(",")),
                      methods=tuple(a.methods.split(",")), budget=a.budget,
                      prompt_len=a.prompt_len, out=a.out)  # fmt: skip
    dest = pathlib.Path(a.results)
    store = RecordStore(dest / "runs.jsonl", defaults=record_defaults)
    runner = None
    if a.command == "run":
        from cbp_jax.run import run

        runner = run
    records, _ = run_cells(cfg.cells(), store, runner, dry_run=a.command == "table")
    opts = {"--task": a.task, "--seeds": a.seeds, "--methods": a.methods, "--budget": a.budget,
            "--prompt-len": a.prompt_len, "--out": a.out}  # fmt: skip
    args = [str(x) for k, v in opts.items() if v != p.get_default(k[2:].replace("-", "_"))
            for x in (k, v)]  # fmt: skip
    section = report(cfg, records, command("bbt", args), dest)
    print(f"wrote {write_table(store, 'bbt', dest, section, filename='table.md', renames=RENAMED)}")


if __name__ == "__main__":
    main()
