"""Study `generator_spread`: how much the stage-1 generator itself moves CBP's z0.

    cbp-jax study generator_spread run          # financial, stage-1 seeds 0-2
    cbp-jax study generator_spread run --extra \
        shipped=checkpoints/shipped/financial-generator    # plus a generator made elsewhere
    cbp-jax study generator_spread table        # from the records only (trains nothing)

Every cell of the CBP tables shares one generator across its seeds, so their ± is the spread
of the k-shot sets and test subsets only. Here the same stage-1 command is run with several
stage-1 seeds (`cbp-jax train-generator --seed S`, the sweep's config otherwise; a finished
generator is reused), plus any `--extra NAME=PATH` generator (the shipped one, trained on
another machine with seed 0). Each generator's z0 is then scored with no stage 2 (method
cbp_z0, costs no API calls) on the sweep's seeds (the cbp study's plan), k-shot sets and
test subsets, and table.md gets test accuracy per generator and seed, the spread within
generators (over seeds) and between them (over generator means).

Runs go through the experiment layer: one cell per (generator, seed), its RunConfig with
repo-relative paths, recorded in the committed runs.jsonl beside this file; the markdown is
written from the records only (its stem, the records' key, is cbp_generator_spread). The
earlier table's numbers are legacy records there (z0 costs no API calls, so no budget to
relabel).
"""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import subprocess

import numpy as np

from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import write_table
from studies.cbp.plan import ROOT, SweepConfig, absolute, portable, run_config
from studies.common import command, header, row
from studies.common import parser as study_parser

QUESTION = "How much does the stage-1 generator alone (seed, machine) move CBP's z0 accuracy?"
ANSWER = (
    "A lot: four financial generators differing only in stage-1 seed or machine spread z0 by a "
    "std of 5.0 points (range 13.0), against 1.2 over k-shot seeds"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
STEM = "cbp_generator_spread"
# the names the legacy table's text gives its files (before the one layout of studies/README.md)
RENAMED = {f"{STEM}.md": "table.md", f"{STEM}_runs.jsonl": "runs.jsonl"}


def train(domain: str, seed: int, cfg: SweepConfig, dry_run: bool = False) -> str:
    """Stage 1 with this seed (the sweep's protocol otherwise); returns the generator."""
    out = cfg.generator_dir(f"{domain}-seed{seed}")
    if not dry_run and not (out / "generator" / "meta.json").exists():
        cmd = cfg.stage1_command(domain, (), out, seed)
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return str(out / "generator")


def report(command: str, task: str, seeds, gens, acc) -> str:
    means = {n: np.mean([acc[n, s] for s in seeds]) for n in gens}
    within = np.mean([np.std([acc[n, s] for s in seeds]) for n in gens])
    lines = [
        f"# z0 across stage-1 generators ({task}, SmolLM2-135M-Instruct)",
        "",
        f"Command: `{command}`",
        "",
        f"CBP z0 only (no stage 2) test accuracy (%), on the sweep's seeds {list(seeds)}"
        " (each seed its own k-shot sets and test subset, as in `cbp.md`). Each generator: the"
        " sweep's stage-1 config on the domain's train pools; they differ in stage-1 seed or"
        " machine only.",
        "",
        *header("generator", *(f"seed {s}" for s in seeds), "mean"),
    ]
    for n in gens:
        lines.append(row(n, *(f"{100 * acc[n, s]:.1f}" for s in seeds), f"{100 * means[n]:.1f}"))
    lines += [
        "",
        f"Spread within a generator (std over seeds, averaged): {100 * within:.1f} points."
        f" Between generators (std of their means): {100 * np.std(list(means.values())):.1f}"
        f" points; range {100 * (max(means.values()) - min(means.values())):.1f}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = study_parser(__doc__.split("\n\n")[0], COMMANDS, RESULTS)
    parser.add_argument("--task", default="financial_phrasebank")
    parser.add_argument("--stage1-seeds", default="0,1,2")
    parser.add_argument("--extra", nargs="*", default=[], help="NAME=PATH generators to add")
    parser.add_argument("--out", default="checkpoints/generator_spread")
    args = parser.parse_args(argv)
    table_only = args.command == "table"
    domain = get_task(args.task).domain
    cfg = SweepConfig(domains=(domain,), leave_one_out=(), out=args.out)
    gens = {f"stage-1 seed {s}": train(domain, int(s), cfg, table_only)
            for s in args.stage1_seeds.split(",")}  # fmt: skip
    gens.update(dict(e.split("=", 1) for e in args.extra))
    cells = []
    for name, path in gens.items():
        for seed in cfg.seeds:
            rc = run_config(cfg, args.task, "cbp", seed, domain)
            tag = name.replace(" ", "-").replace("=", "-")
            rc = portable(dataclasses.replace(rc, method="cbp_z0", generator=path, tag=tag))
            cells.append(Cell(f"{name}/seed{seed}", rc))
    dest = pathlib.Path(args.results)
    store = RecordStore(dest / "runs.jsonl")
    runner = None
    if not table_only:
        from cbp_jax.model import load_model
        from cbp_jax.run import run

        model = load_model("smollm2-135m")

        def runner(rc):
            return run(absolute(rc), progress=False, model=model)

    records, _ = run_cells(cells, store, runner, dry_run=table_only)
    new = ""
    if len(records) == len(cells):
        acc = {}
        for cell, rec in zip(cells, records, strict=True):
            name, seed = cell.name.rsplit("/seed", 1)
            acc[name, int(seed)] = rec["result"]["test_acc"]
        opts = {"--task": args.task, "--stage1-seeds": args.stage1_seeds, "--out": args.out}
        argv_ = [x for k, v in opts.items() if v != parser.get_default(k[2:].replace("-", "_"))
                 for x in (k, v)]  # fmt: skip
        argv_ += ["--extra", *args.extra] if args.extra else []
        new = report(command("generator_spread", argv_), args.task, cfg.seeds, gens, acc)
    print(f"wrote {write_table(store, STEM, dest, new, filename='table.md', renames=RENAMED)}")


if __name__ == "__main__":
    main()
