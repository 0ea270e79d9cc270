"""Benchmark: S seeds of a black-box run as one vmapped compiled call vs S sequential calls.

What: wall time of `Sweeper.run` (S = 8 runs, `jax.vmap` of the whole ES run, one call)
against 8 calls of `Sweeper.run_one` (the same run function, unbatched, its compiled
executable reused for every seed), on a small random model (2 layers, D = 64), BBT soft
prompts (d = 32, T = 4), Sep-CMA-ES, P = 8, 10 generations, 8 examples of 16 tokens.
Compile time is EXCLUDED from both: each path is called once before timing. Timed windows
alternate between the two paths; medians of `repeats` windows are reported.
Run: `nice -n 15 .venv/bin/python experiments/bench_sweep.py` (about a minute on 2 cores).
Ends with `RESULT sweep_speedup <x>`; writes experiments/results/bench_sweep.json.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import statistics
import time

import jax
import numpy as np
from bench_common import parser, write_record

from cbp_jax.data.batching import Inputs
from cbp_jax.experiment.timing import interleaved_times
from cbp_jax.methods.bbt import bbt_parameterization
from cbp_jax.methods.sweep import SweepConfig, Sweeper, make_hparams
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import SoftPrompt

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_sweep.json"
MODEL = LlamaConfig(512, 64, 128, 2, 4, 2, 16)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    seeds: int = 8
    population: int = 8
    generations: int = 10
    examples: int = 8
    seq_len: int = 16
    num_dims: int = 32
    prompt_len: int = 4
    strategy: str = "sep_cma"
    repeats: int = 3

    def __post_init__(self):
        if min(self.seeds, self.population, self.generations, self.examples, self.repeats) < 1:
            raise ValueError("seeds, population, generations, examples, repeats must be >= 1")


def _inputs(cfg: BenchConfig) -> Inputs:
    r = np.random.default_rng(0)
    tokens = r.integers(0, MODEL.vocab_size, (cfg.examples, cfg.seq_len))
    return Inputs(tokens, np.ones_like(tokens), np.array([[5], [9]]), r.integers(0, 2, len(tokens)))


def bench(cfg: BenchConfig) -> dict:
    model = LoadedModel(MODEL, init_params(MODEL, jax.random.key(0), std=0.2), None, "bench")
    service = ScoringService(model, (SoftPrompt(),))
    proj = ProjectionConfig(num_dims=cfg.num_dims, prompt_len=cfg.prompt_len, sigma=1.0)
    param = bbt_parameterization(jax.random.key(1), service.public_info(), proj)
    sweep_cfg = SweepConfig(cfg.strategy, cfg.population, cfg.generations)
    sweeper = Sweeper(service, param, _inputs(cfg), sweep_cfg)
    keys = jax.random.split(jax.random.key(42), cfg.seeds)
    hp = make_hparams(cfg.seeds, sigma0=1.0)
    hp_i = [jax.tree.map(lambda x, i=i: x[i], hp) for i in range(cfg.seeds)]

    def vmapped():
        return sweeper.run(keys, hp).final_mean_SxR  # np.asarray inside: blocks until done

    def sequential():
        runs = [sweeper.run_one(keys[i], hp_i[i]) for i in range(cfg.seeds)]
        return np.stack([r.final_mean_SxR[0] for r in runs])

    start = time.perf_counter()
    a = vmapped()
    compile_vmapped = time.perf_counter() - start
    start = time.perf_counter()
    b = sequential()
    compile_sequential = time.perf_counter() - start
    jobs = {"vmapped": vmapped, "sequential": sequential}
    times = interleaved_times(jobs, cfg.repeats, warmup=False)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "config": dataclasses.asdict(cfg),
        "model": dataclasses.asdict(MODEL),
        "compile_excluded": True,
        "seconds": times,
        "median_seconds": med,
        "first_call_seconds_incl_compile": {
            "vmapped": compile_vmapped,
            "sequential": compile_sequential,
        },
        "sweep_speedup": med["sequential"] / med["vmapped"],
        "max_abs_mean_diff_vmapped_vs_sequential": float(np.abs(a - b).max()),
        "calls_per_sweep": sweeper.calls_per_run * cfg.seeds,
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def main(argv=None) -> None:
    a = parser(__doc__, seeds=BenchConfig.seeds, repeats=BenchConfig.repeats).parse_args(argv)
    out = bench(BenchConfig(seeds=a.seeds, repeats=a.repeats))
    write_record(RESULTS, out, indent=1)
    med = out["median_seconds"]
    print(f"vmapped {med['vmapped']:.3f} s, sequential {med['sequential']:.3f} s (compile excl.)")
    print(f"RESULT sweep_speedup {out['sweep_speedup']:.2f}")


if __name__ == "__main__":
    main()
