"""Study `post`: POST's table: zero-shot, prompt tuning, student, Direct transfer and POST, ± DP.

    cbp-jax study post run            # the full table (days on a CPU)
    cbp-jax study post run --reduced  # the CPU-sized preset, e.g. --set tasks=sst2
    cbp-jax study post run --quick    # smoke run: 1 task, 1 seed, few steps
    cbp-jax study post table          # table.md from the records (its own run's preset)
    cbp-jax study post student        # distil, measure and ship the student (student.py)
    cbp-jax study post student --teacher  # the same probe on the teacher: recipe or student?
    cbp-jax study post published --reduced   # the table as the public code runs it (CPU preset)
    cbp-jax study post published --table-only  # table_published.md from its records

Teacher: smollm2-135m; the student (first + last block) is distilled once on public ag_news
text (resumable, under <out>/student). The plan (plan.py: config, one (task, seed) cell of
every row with and without DP, the audits) and what its records ran are described there;
the markdown is report.py's. One experiment-layer cell per (task, seed); each prompt a cell
tunes or transfers is kept under <out>/cells/<task>-seed<seed>-<config hash>/, so a killed
cell resumes after it; the teacher's two prompts, the longest steps, are also copied to
stashes/post/<same name>/ to be committed, so a new machine resumes after them too, and are
removed there once the cell's record exists. Finished cells are appended to runs.jsonl
beside this file (a changed config is refused, naming the field) and table.md is written
from the records only (--quick: <out>/table_quick.md and <out>/runs_quick.jsonl). The
earlier table's numbers are legacy records there (stem `post`). experiments/results/post.md
links to table.md (acceptance scripts read it there).

`published` is another plan beside that one (published.py: the shipped student, the code's
prompt recipe, alpha paper / 0.5 / public, last and best-on-validation transfer steps): its
records in runs_published.jsonl, its table table_published.md (published_report.py), its
steps under <out>/cells/ (--quick: <out>/table_published_quick.md and
<out>/runs_published_quick.jsonl).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

from cbp_jax.cli_study import committed_run
from cbp_jax.experiment.identity import config_hash
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import RecordStore
from cbp_jax.experiment.step_cache import StepCache
from cbp_jax.experiment.tables import write_table
from cbp_jax.overrides import apply_overrides
from studies.common import command, layout
from studies.post.plan import QUICK, REDUCED, PostTableConfig, cell

QUESTION = "Does POST (student-tuned DP prompt, transferred) beat Direct transfer and zero-shot?"
ANSWER = (
    "No so far: one reduced cell (sst2, seed 0) puts POST at 52-55.5 against Direct transfer "
    "67.0 and zero-shot 71.5; membership inference is at chance with and without DP"
)
COMMANDS = ("run", "table", "student", "published")
RESULTS = pathlib.Path(__file__).resolve().parent
STASHES = RESULTS.parents[1] / "stashes" / "post"  # committed teacher steps of open cells
TEACHER_STEPS = ("full", "full_dp")  # depend on the teacher and the config only
# the names the legacy table's text gives the study's files (before the one layout of
# studies/README.md)
RENAMED = {"post.md": "table.md", "post_runs.jsonl": "runs.jsonl", "post_reading.md": "reading.md",
           "published.md": "table_published.md"}  # fmt: skip


def _cell_dir(config: dict) -> str:
    return f"{config['task']}-seed{config['seed']}-{config_hash(config)}"


def make_runner(cfg, published: bool, stashes: pathlib.Path | None = None):
    """A cell runner of plan.py's cells (the teacher loaded and the student distilled or
    reloaded once) or of published.py's (the teacher and the shipped student loaded once)."""
    from cbp_jax.model import load_model
    from studies.post import published as pub
    from studies.post.student import TEACHER

    teacher = load_model(TEACHER)
    if published:
        from cbp_jax.post.shipped_student import load_student

        student, s_cfg = load_student(cfg.student, teacher)
    else:
        from cbp_jax.post import distill, public_corpus

        corpus = public_corpus(teacher.tokenizer, ("ag_news",), cfg.distill.seq_len)
        st = distill(teacher.params, teacher.cfg, corpus, cfg.distill,
                     pathlib.Path(cfg.out) / "student")  # fmt: skip
        student, s_cfg = st.params, st.cfg

    def runner(config: dict) -> dict:
        task, seed = config["task"], config["seed"]
        steps = pathlib.Path(cfg.out) / "cells" / _cell_dir(config)
        # finished prompts: a killed cell resumes after them; the teacher's two (about 45
        # min each on a CPU core) are also kept in the stashes, for a new machine
        stash = None if stashes is None else stashes / steps.name
        cache = StepCache(steps, stash, TEACHER_STEPS if stash else ())
        out = (pub.cell if published else cell)(cfg, teacher, student, s_cfg, task, seed, cache)
        print(f"{task}/seed{seed}: reused steps {cache.loaded} from {steps}", flush=True)
        return out

    return runner


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=COMMANDS)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (1 task, 1 seed)")
    p.add_argument("--reduced", action="store_true", help="the CPU-sized preset (REDUCED; CPU)")
    p.add_argument("--set", nargs="*", default=[], help="overrides, e.g. tune.epochs=5")
    p.add_argument("--results", default=str(RESULTS), help="records and table live here")
    p.add_argument("--steps", type=int, default=None, help="student: distillation steps")
    p.add_argument("--measure-only", action="store_true", help="student: measure, don't ship")
    p.add_argument("--teacher", action="store_true", help="student: probe the teacher instead")
    p.add_argument("--table-only", action="store_true", help="published: write, run nothing")
    a = p.parse_args(argv)
    if a.command == "student":
        from studies.post import student

        if a.teacher:
            student.probe_teacher(RESULTS / "teacher_probe.json")
            return
        steps = a.steps or student.CONFIG.steps
        student.main(steps, "checkpoints", str(student.SHIPPED), a.measure_only)
        return
    published = a.command == "published"
    verb, stem = ("published", "published") if published else ("run", "post")
    table_only = a.table_only if published else a.command == "table"
    if table_only and not (a.quick or a.reduced or a.set):  # the committed table's own run
        args = committed_run(pathlib.Path(a.results) / layout("table", stem, "post", ".md"),
                             "post", verb)  # fmt: skip
        a.reduced = "--reduced" in args
        a.set = args[args.index("--set") + 1 :] if "--set" in args else []
    if published:
        from studies.post import published as plan
        from studies.post.published_report import section as report

        presets = (plan.QUICK, plan.CPU, plan.PublishedConfig())
    else:
        from studies.post import plan
        from studies.post.report import new_section as report

        presets = (QUICK, REDUCED, PostTableConfig())
    cfg = apply_overrides(presets[0] if a.quick else presets[1] if a.reduced else presets[2],
                          a.set)  # fmt: skip
    dest = pathlib.Path(cfg.out) if a.quick else pathlib.Path(a.results)
    stem += "_quick" * a.quick
    store = RecordStore(dest / layout("runs", stem, "post", ".jsonl"))
    stashes = None if a.quick or published else STASHES
    runner = None if table_only else make_runner(cfg, published, stashes)
    records, _ = run_cells(plan.cells(cfg), store, runner, dry_run=table_only)
    for c in plan.cells(cfg) if runner and stashes else ():  # a finished cell's steps: its record
        if store.get(c) is not None:
            shutil.rmtree(stashes / _cell_dir(c.config), ignore_errors=True)
    args = ["--quick"] * a.quick + ["--reduced"] * a.reduced + (["--set", *a.set] if a.set else [])
    dest.mkdir(parents=True, exist_ok=True)
    section = report(cfg, records, command("post", args, verb))
    name = layout("table", stem, "post", ".md")
    print(f"wrote {write_table(store, stem, dest, section, filename=name, renames=RENAMED)}")


if __name__ == "__main__":
    main()
