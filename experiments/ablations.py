"""BBT ablations as sweeps: test accuracy vs population size, vs intrinsic dimension d, vs sigma0.

Every sweep is one command (`--sweeps population,dims,sigma`). Per task: one k-shot
split (data seed `data_seed`), one random projection per d, and `seeds` ES seeds. The
population sweep and the d sweep are `sweep_shapes` calls (one compile per (P, d), the
seeds vmapped); the sigma0 sweep is ONE compiled call over every (sigma0, seed). Runs in
the population sweep all spend the same API budget (`budget_per_run` calls, train only:
generations = budget // (P x B)); the others use the generations that P = `population`
buys at that budget. Strategy: Sep-CMA-ES (diagonal; P to 10^3 and d to 2000). Scoring is
chunked to a memory budget (`chunk_for_memory`). The ES mean after the last generation is
scored on the test split by the experimenter's own unlimited evaluator.

    python experiments/ablations.py                 # the full ablation (GPU-sized)
    python experiments/ablations.py --quick         # smoke run: tiny budget, one task

Runs go through the experiment layer: one cell per (output stem, task) whose config is the
whole AblationConfig with that task; finished cells are appended to the committed
experiments/results/ablations_runs.jsonl, and <stem>.md, <stem>.json and <stem>.png are
written from the records only (`--table-only`: run nothing). The tables run before the
papers' call unit are legacy records there: their markdown cell by cell, and the raw
per-seed numbers of their JSON files (`legacy/<stem>/json/<task>`); their budgets were
train-only calls, so in the papers' unit they are calls / B exactly (B = 24 train examples).
(`--quick`: ablations_quick.* , marked as a smoke run, never the results files).
Config, sweeps, plot and markdown: cbp_jax.experiment.ablations.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import sys
import time

import jax

from cbp_jax.experiment.ablations import (
    QUICK,
    SWEEPS,
    AblationConfig,
    cells,
    markdown,
    plot,
    run_task,
)
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.legacy import budget_conversion, budget_parts, json_record
from cbp_jax.experiment.records import RecordStore
from cbp_jax.experiment.tables import LegacyTable, append_raw, has_legacy, write_table
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]
RECORDS = RESULTS / "ablations_runs.jsonl"
# The committed tables (old unit; budgets from their commands, financial_phrasebank's 24
# train examples = 8 shots x 3 classes).
_GPU = budget_conversion(24000, 20, {"financial_phrasebank": 24})
_CPU = budget_conversion(2400, 20, {"financial_phrasebank": 24})
LEGACY = (
    LegacyTable("ablations_gpu_sigma", _GPU),
    LegacyTable("ablations_gpu_population", _GPU),
    LegacyTable("ablations_cpu_dims", _CPU),
    LegacyTable(
        "ablations", budget_parts({"sigma0 and population sweeps": _GPU, "d sweep": _CPU})
    ),  # fmt: skip
)


_T0 = time.monotonic()  # script start, for the progress lines


def _say(msg: str) -> None:
    """Progress line with the time since the script started (sweeps are single compiled
    calls, so there is no per-generation bar)."""
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", flush=True)


def import_legacy(store: RecordStore) -> None:
    """The committed tables and their JSON files as legacy records (once)."""
    from cbp_jax.experiment.tables import import_legacy as import_md

    for table in LEGACY:
        if has_legacy(store, table.stem):
            continue
        import_md(store, table, RESULTS, ROOT)
        raw = RESULTS / f"{table.stem}.json"
        if raw.exists():
            payload = json.loads(raw.read_text())
            for task, res in payload["results"].items():
                config = {**payload["config"], "task": task, "command": payload["command"]}
                config["table"] = table.stem
                append_raw(store, json_record(f"legacy/{table.stem}/json/{task}", config, res,
                                              raw, ROOT))  # fmt: skip


def new_section(cfg: AblationConfig, stem: str, records: list[dict], command: str) -> str:
    """<stem>'s report of its new runs (writes <stem>.json and .png); "" when none ran."""
    if not records:
        return ""
    results = {r["config"]["task"]: r["result"] for r in records}
    payload = {"config": dataclasses.asdict(cfg), "command": command, "results": results}
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(results, cfg, RESULTS / f"{stem}.png")
    seconds = sum(r["result"].get("seconds", 0.0) for r in records)
    devices = ", ".join(sorted({r["result"].get("device", "unknown") for r in records}))
    text = markdown(results, cfg, command, seconds, devices)
    return text + f"\nPlot: `{stem}.png`; raw numbers: `{stem}.json`.\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny budget, one task")
    p.add_argument("--sweeps", default=",".join(SWEEPS))
    p.add_argument("--tasks", default=None)
    p.add_argument("--budget-per-run", type=int, default=None)
    p.add_argument("--set", nargs="*", default=[], help="AblationConfig overrides, k=v")
    p.add_argument("--stem", default=None, help="output name under experiments/results")
    p.add_argument("--table-only", action="store_true", help="run nothing; table from records")
    a = p.parse_args(argv)
    kw = dict(QUICK) if a.quick else {}
    kw["sweeps"] = tuple(a.sweeps.split(","))
    if a.tasks:
        kw["tasks"] = tuple(a.tasks.split(","))
    if a.budget_per_run:
        kw["budget_per_run"] = a.budget_per_run
    cfg = apply_overrides(AblationConfig(**kw), a.set)
    stem = a.stem or ("ablations_quick" if cfg.quick else "ablations")
    store = RecordStore(RESULTS / "ablations_quick_runs.jsonl" if cfg.quick else RECORDS)
    if not cfg.quick:
        import_legacy(store)
    runner = None
    if not a.table_only:
        model = load_model(cfg.model)

        def runner(config: dict) -> dict:
            start = time.time()
            out = run_task(cfg, model, config["task"], log=_say)
            device = jax.devices()[0].device_kind
            return {**out, "seconds": time.time() - start, "device": device}

    records, _ = run_cells(cells(cfg, stem), store, runner, dry_run=a.table_only)
    raw = [r for r in store.records.values() if r["name"].startswith(f"legacy/{stem}/json/")]
    if raw and not records:  # the legacy plot, redrawn from its raw per-seed numbers
        results = {r["config"]["task"]: r["result"] for r in raw}
        legacy_cfg = dataclasses.replace(cfg, sweeps=tuple(raw[0]["config"]["sweeps"]))
        plot(results, legacy_cfg, RESULTS / f"{stem}.png")
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--table-only"]
    command = ("python experiments/ablations.py " + shlex.join(args)).strip()
    out = write_table(store, stem, RESULTS, new_section(cfg, stem, records, command))
    print(out.read_text())


if __name__ == "__main__":
    main()
