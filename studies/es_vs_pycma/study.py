"""Study `es_vs_pycma`: our CMA-ES, evosax's and pycma on sphere, ellipsoid, Rosenbrock.

    cbp-jax study es_vs_pycma run      # runs what the record lacks, writes the table
    cbp-jax study es_vs_pycma table    # the table from the committed record only

Our CMA-ES in its old and new default, evosax's CMA_ES and pycma itself, at d = 100 and
500, P = 20, x0 = 0.5, sigma0 = 0.5, 5 seeds, f at the mean after 400 and 1000 generations
(one run each, read at both counts) and milliseconds per generation
(`cbp_jax.es.bench`). Each finished search is appended to runs.jsonl at once,
so a cut-off run resumes; the markdown, es_vs_pycma.md (not table.md: an acceptance script
reads it by that name), is a function of that file alone. Timings are wall clock on
whatever else the machine runs: compare them within one table only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: see tests/conftest.py

from studies.common import header, parser, row  # noqa: E402

QUESTION = "Does our CMA-ES converge as fast as pycma, the optimizer of BBT's code?"
ANSWER = (
    "At d = 500 the new default (pycma's TPA at d >= 300) ends within 30% of pycma on all three; "
    "the old CSA default 20-30x above it on sphere and ellipsoid"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
NAMES = {
    "pycma": "ours, new default (`pycma`: TPA at d >= 300)",
    "lazy_cma": "ours, old default (`lazy_cma`: CSA)",
    "cma": "evosax CMA_ES (CSA)",
    "pycma (the package)": "pycma 4 itself",
}


@dataclasses.dataclass(frozen=True)
class Config:
    functions: tuple[str, ...] = ("sphere", "ellipsoid", "rosenbrock")
    dims: tuple[int, ...] = (100, 500)
    population: int = 20
    generations: tuple[int, ...] = (400, 1000)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)

    def __post_init__(self):
        if self.population < 2 or not self.seeds or min(self.generations) <= 0:
            raise ValueError("population >= 2, at least one seed, positive generations")

    def searches(self):
        for d in self.dims:
            for function in self.functions:
                for name in NAMES:
                    for seed in self.seeds:
                        yield {"name": name, "function": function, "d": d, "seed": seed}


def load(path: pathlib.Path) -> dict:
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return {json.dumps(r["search"], sort_keys=True): r for r in rows}


def table(cfg: Config, records: dict, cpu: str) -> str:
    g0, g1 = cfg.generations[0], cfg.generations[-1]
    lines = [
        "# Our CMA-ES against pycma (BBT's optimizer)",
        "",
        f"Median over {len(cfg.seeds)} seeds of f at the mean after {g0} and {g1} generations, "
        f"P = {cfg.population}, x0 = 0.5, sigma0 = 0.5; ms per generation (median; ask, "
        "f and tell; JAX jitted as a scan, compiled off the clock; pycma in its Python loop). "
        f"Generated from `runs.jsonl` by `cbp-jax study es_vs_pycma`; {cpu}.",
        "",
        *header("d", "function", "strategy", f"f @ {g0}", f"f @ {g1}", "ms / gen", "seeds"),
    ]
    for d in cfg.dims:
        for function in cfg.functions:
            for name, label in NAMES.items():
                got = [records[k] for k in records if _match(records[k], name, function, d)]
                if not got:
                    lines.append(f"| {d} | {function} | {label} | - | - | - | 0 |")
                    continue
                f0 = statistics.median(r["f"][str(g0)] for r in got)
                f1 = statistics.median(r["f"][str(g1)] for r in got)
                ms = statistics.median(r["ms_per_generation"] for r in got)
                lines.append(
                    row(d, function, label, f"{f0:.3g}", f"{f1:.3g}", f"{ms:.1f}", len(got))
                )
    return "\n".join(lines) + "\n"


def _match(rec, name, function, d) -> bool:
    s = rec["search"]
    return (s["name"], s["function"], s["d"]) == (name, function, d)


def main(argv=None) -> None:
    args = parser(__doc__.splitlines()[0], COMMANDS, RESULTS).parse_args(argv)
    cfg, results = Config(), pathlib.Path(args.results)
    path = results / "runs.jsonl"
    records = load(path)
    if args.command == "run":
        from cbp_jax.es.bench import converge
        from cbp_jax.model.precision import machine_info

        cpu = machine_info().get("cpu", "unknown CPU")
        for search in cfg.searches():
            key = json.dumps(search, sort_keys=True)
            if key in records:
                continue
            s = search
            out = converge(s["name"], s["function"], s["d"], cfg.population, cfg.generations,
                           s["seed"])  # fmt: skip
            rec = {"search": search, "f": {str(k): v for k, v in out["f"].items()},
                   "ms_per_generation": out["ms_per_generation"], "cpu": cpu}  # fmt: skip
            with path.open("a") as fh:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
            records[key] = rec
            print(f"{s}: f {rec['f']}, {rec['ms_per_generation']:.1f} ms/gen", flush=True)
    cpus = sorted({r.get("cpu", "unknown CPU") for r in records.values()})
    note = "measured on " + " / ".join(cpus) + " (2 cores, shared with two paper-budget runs)"
    out = results / "es_vs_pycma.md"
    out.write_text(table(cfg, records, note))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
