"""Benchmark one ES generation (ask + tell): our LazyCMA_ES vs evosax CMA_ES, Sep_CMA_ES, pycma.

What: seconds per generation of ask, a sphere fitness and tell, for each strategy at the
(d, population) settings given, through `cbp_jax.es.bench.compare_steps` (JAX strategies jitted
and blocked every generation; a figure is the median over `--repeats` windows of the mean over
`--n-gens` generations, windows interleaved across strategies so that load drifts hit all).

Why: the full CMA-ES in evosax recomputes an eigendecomposition every generation and was about
2x slower than pycma at d=500, population 20; the lazy variant must be no slower than pycma at
any setting tested. Prints a table and `RESULT es_step_vs_pycma_min <x>`, the minimum over
settings of pycma's time over lazy_cma's (> 1 means ours is faster everywhere).

Run: `.venv/bin/python experiments/bench_es_step.py [--configs 500x20,500x200,2000x100]
[--n-gens 20 --repeats 5 --blas-threads 1 --json out.json]`. Needs `pip install cma`.
`--blas-threads` (default 1; 0 leaves OpenBLAS's own default) sets OPENBLAS_NUM_THREADS for
both sides: multi-threaded OpenBLAS (pycma's numpy, and JAX's CPU eigh through scipy's
LAPACK) spin-waits and slowed single eighs 10-100x, erratically, on a contended 2-core box.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

from bench_common import parser


def parse_args(argv=None) -> argparse.Namespace:
    return parser(
        __doc__.split("\n\n")[0], configs=("500x20,500x200,2000x100", "dxP,dxP,..."),
        names="lazy_cma,cma,sep_cma,pycma", n_gens=(20, "generations per timed window"),
        repeats=(5, "windows per strategy"), warmup=3,
        blas_threads=(1, "OPENBLAS_NUM_THREADS; 0: leave as is"),
        json=(None, "also write the figures to this file"),
    ).parse_args(argv)  # fmt: skip


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.blas_threads > 0:  # must precede the first numpy/scipy import
        os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)
    from cbp_jax.es.bench import PYCMA, compare_steps

    names = args.names.split(",")
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    print(
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} "
        f"load={os.getloadavg()[0]:.1f} n_gens={args.n_gens} repeats={args.repeats}"
    )
    print(
        f"{'d':>5} {'P':>4} " + " ".join(f"{n + ' ms':>12}" for n in names) + f" {'pycma/lazy':>10}"
    )
    rows, ratios = [], []
    for d, P in configs:
        windows = compare_steps(names, d, P, args.n_gens, repeats=args.repeats, warmup=args.warmup)
        ms = {n: 1e3 * statistics.median(w) for n, w in windows.items()}
        ratio = None
        if PYCMA in ms and "lazy_cma" in ms:
            ratio = ms[PYCMA] / ms["lazy_cma"]
            ratios.append(ratio)
        print(
            f"{d:>5} {P:>4} "
            + " ".join(f"{ms[n]:>12.2f}" for n in names)
            + (f" {ratio:>10.2f}" if ratio is not None else ""),
            flush=True,
        )
        rows.append({"d": d, "P": P, "ms": ms, "windows_s": windows, "pycma_over_lazy": ratio})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)
    if ratios:
        print(f"RESULT es_step_vs_pycma_min {min(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
