"""How much the stage-1 generator itself moves CBP's z0: one domain, several generators.

    python experiments/cbp_generator_spread.py             # financial, stage-1 seeds 0-2
    python experiments/cbp_generator_spread.py --extra \
        shipped=checkpoints/shipped/financial-generator    # plus a generator made elsewhere

Every cell of the CBP tables shares one generator across its seeds, so their ± is the spread
of the k-shot sets and test subsets only. Here the same stage-1 command is run with several
stage-1 seeds (`cbp-jax train-generator --seed S`, the sweep's config otherwise; a finished
generator is reused), plus any `--extra NAME=PATH` generator (the shipped one, trained on
another machine with seed 0). Each generator's z0 is then scored with no stage 2 (method
cbp_z0, costs no API calls) on the sweep's seeds, k-shot sets and test subsets, and
experiments/results/cbp_generator_spread.md gets test accuracy per generator and seed, the
spread within generators (over seeds) and between them (over generator means).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import subprocess
import sys

import numpy as np
from cbp_sweep import ROOT, SweepConfig, run_config

from cbp_jax.data.tasks import get_task

RESULTS = ROOT / "experiments" / "results"


def train(domain: str, seed: int, cfg: SweepConfig) -> str:
    """Stage 1 with this seed (the sweep's protocol otherwise); returns the generator."""
    out = cfg.generator_dir(f"{domain}-seed{seed}")
    if not (out / "generator" / "meta.json").exists():
        cmd = cfg.stage1_command(domain, (), out, seed)
        print("+", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    return str(out / "generator")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="financial_phrasebank")
    parser.add_argument("--stage1-seeds", default="0,1,2")
    parser.add_argument("--extra", nargs="*", default=[], help="NAME=PATH generators to add")
    parser.add_argument("--out", default="checkpoints/generator_spread")
    args = parser.parse_args(argv)
    domain = get_task(args.task).domain
    cfg = SweepConfig(domains=(domain,), leave_one_out=(), out=args.out)
    gens = {f"stage-1 seed {s}": train(domain, int(s), cfg) for s in args.stage1_seeds.split(",")}
    gens.update(dict(e.split("=", 1) for e in args.extra))

    from cbp_jax.model import load_model
    from cbp_jax.run import run

    model = load_model("smollm2-135m")
    acc = {}
    for name, path in gens.items():
        for seed in cfg.seeds:
            rc = run_config(cfg, args.task, "cbp", seed, domain)
            tag = name.replace(" ", "-").replace("=", "-")
            rc = dataclasses.replace(rc, method="cbp_z0", generator=path, tag=tag)
            acc[name, seed] = run(rc, progress=False, model=model)["test_acc"]
            print(f"{name}, seed {seed}: z0 test {acc[name, seed]:.4f}", flush=True)

    means = {n: np.mean([acc[n, s] for s in cfg.seeds]) for n in gens}
    within = np.mean([np.std([acc[n, s] for s in cfg.seeds]) for n in gens])
    command = "python experiments/cbp_generator_spread.py" + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    lines = [
        f"# z0 across stage-1 generators ({args.task}, SmolLM2-135M-Instruct)",
        "",
        f"Command: `{command}`",
        "",
        f"CBP z0 only (no stage 2) test accuracy (%), on the sweep's seeds {list(cfg.seeds)}"
        " (each seed its own k-shot sets and test subset, as in `cbp.md`). Each generator: the"
        " sweep's stage-1 config on the domain's train pools; they differ in stage-1 seed or"
        " machine only.",
        "",
        "| generator | " + " | ".join(f"seed {s}" for s in cfg.seeds) + " | mean |",
        "|---|" + "---|" * (len(cfg.seeds) + 1),
    ]
    for n in gens:
        cells = " | ".join(f"{100 * acc[n, s]:.1f}" for s in cfg.seeds)
        lines.append(f"| {n} | {cells} | {100 * means[n]:.1f} |")
    lines += [
        "",
        f"Spread within a generator (std over seeds, averaged): {100 * within:.1f} points."
        f" Between generators (std of their means): {100 * np.std(list(means.values())):.1f}"
        f" points; range {100 * (max(means.values()) - min(means.values())):.1f}.",
    ]
    md = RESULTS / "cbp_generator_spread.md"
    md.write_text("\n".join(lines) + "\n")
    print(md.read_text())


if __name__ == "__main__":
    main()
