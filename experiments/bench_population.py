"""Benchmark population evaluation: our compiled path vs BBT-style PyTorch references.

What: throughput in candidate-examples per second of scoring a CMA-ES population of soft
prompts on a batch of real SST-2 inputs (candidate-token log-probs at the answer position):
- ours: the engine's scoring path, the service's `Oracle` in one jitted call over the whole
  population, the batch split into the engine's 4 length buckets (`Inputs.buckets`, as
  `run_blackbox` scores it); the soft prompt, shared by the batch, runs once per candidate
  (`model.shared_prefix`). Also timed on one padded batch (`ours_one_batch`);
- torch loop: transformers PyTorch on the same GGUF weights, a Python loop over
  candidates, each a batched forward with `inputs_embeds` = [prompt; text] on the batch
  padded to its longest example (BBT's code); `torch_loop_buckets` runs the loop on our
  4 buckets, so `speedup_same_padding` compares equal padding;
- torch concat: all candidates' copies of the batch concatenated into one forward, logits
  split afterwards (the other common variant).
All compute the same numbers (checked). Then the cost per candidate of ours from
P = 10 to 200, and the ES step (ask + tell) against pycma at three (d, P), plus the share
of a generation the ES step takes.
Run: `.venv/bin/python experiments/bench_population.py` (about 20 minutes on 2 cores).
Ends with `RESULT speedup_vs_loop <x>` and `RESULT es_step_vs_pycma_min <x>`.
"""

from __future__ import annotations

import os

# One OpenBLAS thread: multi-threaded eigh on 2 shared cores was erratic for pycma and us.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses
import datetime
import json
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import make_inputs
from cbp_jax.data.splits import kshot_splits
from cbp_jax.data.tasks import get_task
from cbp_jax.es.bench import PYCMA, compare_steps
from cbp_jax.model import load_model
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import SoftPrompt

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_population.json"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    population: int = 20
    examples: int = 32
    prompt_len: int = 50
    repeats: int = 2
    scaling_populations: tuple[int, ...] = (10, 50, 200)
    scaling_examples: int = 4
    es_points: tuple[tuple[int, int], ...] = ((500, 20), (500, 200), (2000, 100))
    es_strategy: str = "lazy_cma"
    buckets: int = 4  # the engine's default (BlackBoxConfig.buckets)

    def __post_init__(self):
        if min(self.population, self.examples, self.prompt_len, self.repeats) <= 0:
            raise ValueError("population, examples, prompt_len and repeats must be positive")


def median_time(fn, repeats: int) -> float:
    fn()  # warm up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_scorers(source: str, batches, cands):
    """BBT-style references on the same weights: a loop over candidates, and concat-split."""
    import pathlib as _p

    import torch
    import transformers

    torch.set_num_threads(2)
    path = _p.Path(source)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    flat = torch.tensor(cands.reshape(-1))
    batches_t = [(torch.tensor(np.asarray(t)), torch.tensor(np.asarray(m))) for t, m in batches]

    def run(prompts_PxTxD, batch=0):  # one forward over len(prompts) * b rows
        tok_t, mask_t = batches_t[batch]
        b = tok_t.shape[0]
        p, t, _ = prompts_PxTxD.shape
        text = model.get_input_embeddings()(tok_t).repeat(p, 1, 1)
        prompt = prompts_PxTxD.repeat_interleave(b, 0)
        full_mask = torch.cat([torch.ones(p * b, t, dtype=mask_t.dtype), mask_t.repeat(p, 1)], 1)
        pos = (full_mask.cumsum(1) - 1).clamp(min=0)
        out = model(
            inputs_embeds=torch.cat([prompt, text], 1),
            attention_mask=full_mask,
            position_ids=pos,
            logits_to_keep=1,
        ).logits[:, -1]
        return torch.log_softmax(out, -1)[:, flat].reshape(p, b, *cands.shape)

    def loop(prompts, batch=0):
        with torch.inference_mode():
            return torch.cat([run(prompts[i : i + 1], batch) for i in range(prompts.shape[0])])

    def loop_buckets(prompts):
        return torch.cat([loop(prompts, i) for i in range(1, len(batches_t))], 1)

    def concat(prompts):
        with torch.inference_mode():
            return run(prompts)

    return loop, loop_buckets, concat, torch


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=BenchConfig.population)
    parser.add_argument("--prompt-len", type=int, default=BenchConfig.prompt_len)
    parser.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    args = parser.parse_args(argv)
    cfg = BenchConfig(population=args.population, prompt_len=args.prompt_len, repeats=args.repeats)
    model = load_model("smollm2-135m")
    task = get_task("sst2")
    examples = kshot_splits("sst2", cfg.examples // 2, seed=0).train[: cfg.examples]
    data = make_inputs(model.tokenizer, task, examples)
    tokens, mask, cands = data.tokens_BxS, data.mask_BxS, data.candidates_CxW
    oracle = ScoringService(model, (SoftPrompt(),)).oracle("prompt")
    score = jax.jit(lambda o, p, t, m, c: o(p, t, m, c))
    buckets, _ = data.buckets(cfg.buckets)
    score_buckets = jax.jit(lambda o, p, bs: jnp.concatenate([o(p, *b) for b in bs], axis=1))
    bucket_order = np.argsort(mask.sum(axis=1), kind="stable")  # the buckets' row order
    emb_std = float(jnp.std(model.params["embed"]))
    rng = np.random.default_rng(0)

    def prompts(p):
        shape = (p, cfg.prompt_len, model.cfg.hidden_size)
        return (emb_std * rng.standard_normal(shape)).astype(np.float32)

    pop = prompts(cfg.population)
    dev = [jnp.asarray(x) for x in (tokens, mask, cands)]
    ours_one = np.asarray(score(oracle, jnp.asarray(pop), *dev))
    ours_out = np.asarray(score_buckets(oracle, jnp.asarray(pop), buckets))
    batches = [(tokens, mask)] + [b[:2] for b in buckets]
    loop, loop_buckets, concat, torch = torch_scorers(model.source, batches, cands)
    pop_t = torch.tensor(pop)
    ref = loop(pop_t).numpy()
    diff = max(
        float(np.abs(ref - ours_one).max()),
        float(np.abs(ref[:, bucket_order] - ours_out).max()),
        float(np.abs(loop_buckets(pop_t).numpy() - ours_out).max()),
    )
    print(f"max |log-prob difference| ours vs torch (all variants): {diff:.2e}")
    real = int(mask.sum())
    widths = [int(b[0].shape[1]) for b in buckets]
    print(
        f"{cfg.examples} examples, {real} real tokens; one batch {tokens.shape[1]} wide "
        f"({tokens.size} slots), {len(buckets)} buckets {widths} "
        f"({sum(int(b[0].size) for b in buckets)} slots)"
    )
    n = cfg.population * cfg.examples
    sec = {
        "ours": median_time(
            lambda: jax.block_until_ready(score_buckets(oracle, jnp.asarray(pop), buckets)),
            cfg.repeats,
        ),
        "ours_one_batch": median_time(
            lambda: score(oracle, jnp.asarray(pop), *dev).block_until_ready(), cfg.repeats
        ),
        "torch_loop": median_time(lambda: loop(pop_t), cfg.repeats),
        "torch_loop_buckets": median_time(lambda: loop_buckets(pop_t), cfg.repeats),
        "torch_concat": median_time(lambda: concat(pop_t), cfg.repeats),
    }
    for name, s in sec.items():
        print(f"{name:>18}: {s:7.2f} s per generation, {n / s:8.1f} candidate-examples/s")
    small = [jnp.asarray(x[: cfg.scaling_examples]) for x in (tokens, mask)] + [dev[2]]
    per_candidate = {}
    for p in cfg.scaling_populations:
        pp = jnp.asarray(prompts(p))
        s = median_time(lambda pp=pp: score(oracle, pp, *small).block_until_ready(), 2)
        per_candidate[p] = s / p
        print(f"P={p:4d}, {cfg.scaling_examples} examples: {1e3 * s / p:7.2f} ms per candidate")
    es = {}
    for d, p in cfg.es_points:
        w = compare_steps([cfg.es_strategy, PYCMA], d, p, n_gens=10, repeats=3)
        es[f"{d}x{p}"] = {k: statistics.median(v) for k, v in w.items()}
        ratio = es[f"{d}x{p}"][PYCMA] / es[f"{d}x{p}"][cfg.es_strategy]
        print(
            f"ES step d={d} P={p}: ours {1e3 * es[f'{d}x{p}'][cfg.es_strategy]:.2f} ms, "
            f"pycma {1e3 * es[f'{d}x{p}'][PYCMA]:.2f} ms, pycma/ours {ratio:.2f}"
        )
    key = f"500x{cfg.population}" if f"500x{cfg.population}" in es else next(iter(es))
    figures = {
        "speedup_vs_loop": sec["torch_loop"] / sec["ours"],
        "speedup_same_padding": sec["torch_loop_buckets"] / sec["ours"],
        "speedup_one_batch": sec["torch_loop"] / sec["ours_one_batch"],
        "speedup_vs_concat": sec["torch_concat"] / sec["ours"],
        "ours_candidate_examples_per_s": n / sec["ours"],
        "per_candidate_ratio_max_over_min": max(per_candidate.values())
        / min(per_candidate.values()),
        "es_step_vs_pycma_min": min(v[PYCMA] / v[cfg.es_strategy] for v in es.values()),
        "es_step_share_of_generation": es[key][cfg.es_strategy] / sec["ours"],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                **figures,
                "seconds": sec,
                "per_candidate_s": per_candidate,
                "es_step_s": es,
                "max_abs_logprob_diff": diff,
                "config": dataclasses.asdict(cfg),
                "command": " ".join([sys.executable, *sys.argv]),
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "jax_version": jax.__version__,
                "torch_version": torch.__version__,
            },
            indent=1,
        )
    )
    for name, value in figures.items():
        print(f"RESULT {name} {value:.4g}")
    return figures


if __name__ == "__main__":
    main()
