"""RAPT privacy-utility table: PEFT accuracy and attack success per noise level eta.

Per task, seed and eta: prompt tuning, prefix tuning and LoRA on privatized text, each
without and with RAPT's reconstruction task (a head over the vocabulary recovering public
plain tokens privatized with the input and placed after it: the fixed sequence, or random
public tokens per example); the plain tokens before the text as an ablation row; the
non-private oracle head (the user's original tokens: an upper bound, not RAPT); zero-shot
and non-private prompt tuning as references. Attacks on the private test text per
eta, all fitted on PUBLIC text (ag_news train pool) privatized at the same eta: token
inversion (identity, nearest public token, learned count table), embedding inversion of the
service's hidden states, and attribute inference (does the original text contain a digit?).

Every run (zero-shot, one arm at one eta, the attacks at one eta; per task and seed) is a
cell of the experiment layer: a record in the committed experiments/results/rapt_runs.jsonl
keyed by the hash of its whole config (a changed config is refused, naming the field), and
a rerun skips finished runs. rapt.md is written from the records only (`--table-only`: run
nothing). The earlier table's numbers are legacy records there (no API-call budget).
Config, runs and markdown: cbp_jax.experiment.rapt_table; attacks: cbp_jax.privacy.attack_suite.

    python experiments/rapt_table.py --set tasks=sst2 seeds=13 etas=40,100 epochs=5
    python experiments/rapt_table.py --quick --results /tmp/rapt_smoke   # smoke run
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import shlex
import sys

from cbp_jax.experiment.rapt_table import QUICK, TableConfig, report, run_seed
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import LegacyTable, get_or_run, import_legacy, write_table
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides
from cbp_jax.privacy.attack_suite import public_text

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]
LEGACY = LegacyTable("rapt", None)  # white-box tuning and attacks: no API-call budget


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 eta, 1 seed")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. epochs=10")
    p.add_argument("--table-only", action="store_true", help="run nothing; table from records")
    a = p.parse_args(argv)
    cfg = apply_overrides(TableConfig(**(QUICK if a.quick else {})), a.set)
    out = pathlib.Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    store = RecordStore(out / "rapt_runs.jsonl")
    if out.resolve() == RESULTS.resolve():  # the committed table: its legacy numbers too
        import_legacy(store, LEGACY, RESULTS, ROOT)

    def get(name, payload, compute):
        return get_or_run(store, Cell(name, payload), compute, dry_run=a.table_only)

    model = public = None
    if not a.table_only:
        model = load_model("smollm2-135m")
        public = public_text(model.tokenizer, cfg.public_task, cfg.public_size)
    run = functools.partial(run_seed, model, cfg, get)
    res = {n: [run(n, s, public) for s in cfg.seeds] for n in cfg.tasks}
    ran = any(not r.get("legacy") for r in store.records.values())
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--table-only"]
    command = ("python experiments/rapt_table.py " + shlex.join(args)).strip()
    print(write_table(store, "rapt", out, report(cfg, res, command) if ran else "").read_text())


if __name__ == "__main__":
    main()
