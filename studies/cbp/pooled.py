"""CBP held-out - BBT pooled over the held-out tasks of several sweeps of the cbp study.

    python -m studies.cbp.pooled            # from the checkout's root
    python -m studies.cbp.pooled --sweep "" --sweep \
        "domains=sentiment leave_one_out=sst2,ag_news out=checkpoints/cbp_sentiment"

Each --sweep is one sweep's SweepConfig overrides (k=v, space-separated; "" is the main
table's defaults), optionally after `NAME:` (its records: studies/cbp/runs.jsonl for cbp,
runs_<v>.jsonl for cbp_<v>; default: cbp). Reads run records only (nothing is run; legacy
records, which keep only the tables' cells, have no per-seed results to pair): per held-out
task the per-seed differences CBP held-out - BBT on shared k-shot sets and test subsets,
then one t interval over all tasks (`cbp_jax.stats.paired_summary`, a task's mean over
seeds is one unit). Default: the main table (8 held-out tasks) and the sentiment table (2).
"""

from __future__ import annotations

import argparse
import pathlib
import shlex

from cbp_jax.experiment.records import RecordStore
from cbp_jax.overrides import apply_overrides
from cbp_jax.stats import paired_summary
from studies.cbp.plan import SweepConfig
from studies.cbp.report import seed_diffs, use_records
from studies.common import layout

DEFAULT_SWEEPS = (
    "cbp:",
    "cbp_sentiment:domains=sentiment leave_one_out=sst2,ag_news out=checkpoints/cbp_sentiment",
)
RESULTS = pathlib.Path(__file__).resolve().parent


def held_out_diffs(sweeps: list[str]) -> dict[str, list[float] | None]:
    """task -> per-seed CBP held-out - BBT differences (None if a seed is missing)."""
    diffs: dict[str, list[float] | None] = {}
    for sweep in sweeps:
        name, overrides = sweep.split(":", 1) if ":" in sweep.split("=")[0] else ("cbp", sweep)
        cfg = apply_overrides(SweepConfig(), shlex.split(overrides))
        records = RecordStore(RESULTS / layout("runs", name, "cbp", ".jsonl")).records
        use_records(list(records.values()))
        for task in cfg.leave_one_out:
            if task in diffs:
                raise ValueError(f"task {task!r} is held out in two of the sweeps")
            cbp = ("cbp", cfg.held_out_generator(task))
            diffs[task] = seed_diffs(cfg, task, cbp, ("bbt", ""))
    return diffs


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sweep", action="append", help="one sweep's overrides (repeatable)")
    args = parser.parse_args(argv)
    diffs = held_out_diffs(args.sweep if args.sweep is not None else list(DEFAULT_SWEEPS))
    for task, d in diffs.items():
        cell = "not finished" if d is None else f"{100 * sum(d) / len(d):+.1f}"
        print(f"{task:>22}  {cell}")
    done = {t: d for t, d in diffs.items() if d is not None}
    if not done:
        raise SystemExit("no held-out task has all its seeds finished")
    print(f"CBP held-out - BBT, paired by seed (points): {paired_summary(done).describe()}")


if __name__ == "__main__":
    main()
