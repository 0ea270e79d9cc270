"""POST table: zero-shot, full prompt tuning, student, Direct transfer and POST, with/without DP.

Teacher: the default model (smollm2-135m). The student (first + last block) is distilled once
on public ag_news text (resumable, under <out>/student). Per private task (sst2,
financial_phrasebank) and seed the user's private set is `private_size` examples of the
task's train pool (None: the whole pool, N = 436 / 2419); prompts are tuned by
`dp_tune_prompt` with the recorded optimiser (SGD, lr 1e-3, 20 epochs; the public code's
is lr 5e-4 for 5 epochs, Adam without DP and SGD with DP, DPConfig's default now; the same Poisson
batches with and without DP; DP at epsilon = 8 and delta = delta_factor / N < 1/N). No
private data is used outside the accountant: the last prompt is released (no dev
selection) and alpha comes from public inputs only (`public_alpha`: the teacher's
zero-shot agreement with the prompted student). The student's prompt is evaluated on the
student, on the teacher as is (Direct transfer) and after POST transfer with each of two
public sets (ag_news news text and boolq Wikipedia passages, in the private task's
template). Audits on the student prompt: the loss-threshold attack and offline LiRA with
`shadows` shadow prompts, trained by the same algorithm on test-pool examples that are
not audit targets; members are `audit_size` examples of the private set, non-members as
many test-pool examples. Runs go through the experiment layer: one cell per (task, seed),
its config the whole table config (each prompt a cell tunes or transfers is kept under
<out>/cells/<task>-seed<seed>-<config hash>/, so a killed cell resumes after it; the
teacher's two prompts, the longest steps, are also copied to
experiments/results/post_in_flight/<same name>/ to be committed, so a new machine resumes
after them too, and are removed there once the cell's record exists); finished
cells are appended to the committed experiments/results/post_runs.jsonl (a changed config
is refused, naming the field), and experiments/results/post.md is written from the records
only (`--table-only`: run nothing; --quick: <out>/post_quick.md and
<out>/post_quick_runs.jsonl). The earlier table's numbers are legacy records there
(white-box and DP runs: no API-call budget). Config, runs and markdown:
cbp_jax.experiment.post_table and post_report.

    python experiments/post_table.py            # the full table (days on a CPU)
    python experiments/post_table.py --reduced  # the CPU-sized preset, e.g. --set tasks=sst2
    python experiments/post_table.py --quick    # smoke run: 1 task, 1 seed, few steps
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import shutil
import sys

from cbp_jax.experiment.identity import config_hash
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.post_report import new_section
from cbp_jax.experiment.post_table import QUICK, REDUCED, PostTableConfig, cell, cells
from cbp_jax.experiment.records import RecordStore
from cbp_jax.experiment.step_cache import StepCache
from cbp_jax.experiment.tables import LegacyTable, import_legacy, write_table
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides
from cbp_jax.post import distill, public_corpus

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]
LEGACY = LegacyTable("post", None)  # prompt tuning, distillation, DP: no API-call budget
TEACHER_STEPS = ("full", "full_dp")  # depend on the teacher and the config only


def _cell_dir(config: dict) -> str:
    return f"{config['task']}-seed{config['seed']}-{config_hash(config)}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (1 task, 1 seed)")
    p.add_argument("--reduced", action="store_true", help="the CPU-sized preset (REDUCED)")
    p.add_argument("--set", nargs="*", default=[], help="overrides, e.g. tune.epochs=5")
    p.add_argument("--table-only", action="store_true", help="run nothing; table from records")
    a = p.parse_args(argv)
    base = QUICK if a.quick else REDUCED if a.reduced else PostTableConfig()
    cfg = apply_overrides(base, a.set)
    dest, stem = (pathlib.Path(cfg.out), "post_quick") if a.quick else (RESULTS, "post")
    store = RecordStore(dest / f"{stem}_runs.jsonl")
    in_flight = dest / "post_in_flight"  # committed copies of unfinished cells' teacher steps
    if not a.quick:
        import_legacy(store, LEGACY, RESULTS, ROOT)
    runner = None
    if not a.table_only:
        teacher = load_model("smollm2-135m")
        corpus = public_corpus(teacher.tokenizer, ("ag_news",), cfg.distill.seq_len)
        st = distill(
            teacher.params, teacher.cfg, corpus, cfg.distill, pathlib.Path(cfg.out) / "student"
        )

        def runner(config: dict) -> dict:
            task, seed = config["task"], config["seed"]
            steps = pathlib.Path(cfg.out) / "cells" / _cell_dir(config)
            # finished prompts: a killed cell resumes after them; the teacher's two (about
            # 45 min each on a CPU core) are also kept beside the records, for a new machine
            stash = None if a.quick else in_flight / steps.name
            cache = StepCache(steps, stash, TEACHER_STEPS if stash else ())
            out = cell(cfg, teacher, st.params, st.cfg, task, seed, cache)
            print(f"{task}/seed{seed}: reused steps {cache.loaded} from {steps}", flush=True)
            return out

    records, _ = run_cells(cells(cfg), store, runner, dry_run=a.table_only)
    for c in cells(cfg):  # a finished cell's stashed steps are in its record now
        if not a.quick and store.get(c) is not None:
            shutil.rmtree(in_flight / _cell_dir(c.config), ignore_errors=True)
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--table-only"]
    command = ("python experiments/post_table.py " + shlex.join(args)).strip()
    dest.mkdir(parents=True, exist_ok=True)
    print(write_table(store, stem, dest, new_section(cfg, records, command)).read_text())


if __name__ == "__main__":
    main()
