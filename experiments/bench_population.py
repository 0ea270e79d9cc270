"""Benchmark population evaluation: our compiled path vs BBT-style PyTorch references.

What: throughput in candidate-examples per second of scoring a CMA-ES population of soft
prompts on a batch of real SST-2 inputs (candidate-token log-probs at the answer position):
- ours: the engine's scoring path, the service's `Oracle` in one jitted call over the whole
  population, the batch split into the engine's 4 length buckets (`Inputs.buckets`, as
  `run_blackbox` scores it); the soft prompt, shared by the batch, runs once per candidate
  (`decoder.forward_shared_prompt`). Also timed on one padded batch (`ours_one_batch`);
- torch loop: transformers PyTorch on the same GGUF weights, a Python loop over
  candidates, each a batched forward with `inputs_embeds` = [prompt; text] on the batch
  padded to its longest example (BBT's code); `torch_loop_buckets` runs the loop on our
  4 buckets, so `speedup_same_padding` compares equal padding;
- torch concat: all candidates' copies of the batch concatenated into one forward, logits
  split afterwards (the other common variant).
All compute the same numbers (checked). Then the cost per candidate of ours from
P = 10 to 200, and the ES step (ask + tell) against pycma at three (d, P), plus the share
of a generation the ES step takes.
Precision: ours runs in the auto dtype (`cbp_jax.model.precision`: bfloat16 matmul inputs
on CPUs with AMX/AVX512-BF16, else float32); the torch references run in their best dtype on
this machine (timed in float32 and, where the CPU has native bf16, bfloat16; the faster is
the reference). The agreement check
compares ours and torch in float32 first, so the bf16 speed is not bought with wrong numbers.
Run: `.venv/bin/python experiments/bench_population.py [--quick]` (about 20 minutes on 2
cores; `--quick`: P = 20 on 16 examples, the torch loop only (in bf16 alone on a CPU with
native bf16, where the full run finds it ~3.6x faster than float32), no scaling sweep, one ES
point, a few minutes on a quiet machine).
Ends with `RESULT speedup_vs_loop <x>` and `RESULT es_step_vs_pycma_min <x>`.
"""

from __future__ import annotations

import os

# One OpenBLAS thread: multi-threaded eigh on 2 shared cores was erratic for pycma and us.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses  # noqa: E402
import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import kshot_inputs, parser, print_results, stamp, torch_model, write_record

from cbp_jax.es.bench import PYCMA, compare_steps
from cbp_jax.experiment.timing import interleaved_medians
from cbp_jax.model import load_model
from cbp_jax.model.precision import machine_info, resolve_dtype
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import SoftPrompt

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_population.json"
RESULTS_QUICK = RESULTS.with_name("bench_population_quick.json")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    population: int = 20
    examples: int = 32
    prompt_len: int = 50
    repeats: int = 3  # interleaved repeats; the median is reported
    scaling_populations: tuple[int, ...] = (10, 50, 200)
    scaling_examples: int = 4
    es_points: tuple[tuple[int, int], ...] = ((500, 20), (500, 200), (2000, 100))
    es_strategy: str = "lazy_cma"
    buckets: int = 4  # the engine's default (BlackBoxConfig.buckets)

    def __post_init__(self):
        if min(self.population, self.examples, self.prompt_len, self.repeats) <= 0:
            raise ValueError("population, examples, prompt_len and repeats must be positive")


def median_time(fn, repeats: int) -> float:
    return interleaved_medians({"job": fn}, repeats)["job"]


def torch_scorers(source: str, batches, cands, dtype: str = "float32"):
    """BBT-style references on the same weights: a loop over candidates, and concat-split."""
    torch, model = torch_model(source, dtype)
    flat = torch.tensor(cands.reshape(-1))
    batches_t = [(torch.tensor(np.asarray(t)), torch.tensor(np.asarray(m))) for t, m in batches]

    def run(prompts_PxTxD, batch=0):  # one forward over len(prompts) * b rows
        tok_t, mask_t = batches_t[batch]
        b = tok_t.shape[0]
        p, t, _ = prompts_PxTxD.shape
        text = model.get_input_embeddings()(tok_t).repeat(p, 1, 1)
        prompt = prompts_PxTxD.to(text.dtype).repeat_interleave(b, 0)
        full_mask = torch.cat([torch.ones(p * b, t, dtype=mask_t.dtype), mask_t.repeat(p, 1)], 1)
        pos = (full_mask.cumsum(1) - 1).clamp(min=0)
        out = model(
            inputs_embeds=torch.cat([prompt, text], 1),
            attention_mask=full_mask,
            position_ids=pos,
            logits_to_keep=1,
        ).logits[:, -1]
        return torch.log_softmax(out.float(), -1)[:, flat].reshape(p, b, *cands.shape)

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
    b = BenchConfig
    args = parser(__doc__, population=b.population, prompt_len=b.prompt_len, repeats=b.repeats,
                  quick=(False, "16 examples, no scaling sweep")).parse_args(argv)  # fmt: skip
    quick = {"examples": 16, "scaling_populations": (), "es_points": ((500, 20),)}
    cfg = BenchConfig(
        population=args.population,
        prompt_len=args.prompt_len,
        repeats=args.repeats,
        **(quick if args.quick else {}),
    )
    auto = resolve_dtype("auto")
    machine = machine_info()
    torch_dtype = "bfloat16" if machine["bf16_flags"] else "float32"
    print(f"ours: {auto.dtype} ({auto.reason}); torch tried in float32 and {torch_dtype}")
    print(f"machine: {machine}")
    model32 = load_model("smollm2-135m")
    model = model32 if auto.dtype == "float32" else load_model("smollm2-135m", dtype=auto.dtype)
    data = kshot_inputs(model.tokenizer, "sst2", cfg.examples // 2, cfg.examples)
    tokens, mask, cands = data.tokens_BxS, data.mask_BxS, data.candidates_CxW
    oracle = ScoringService(model, (SoftPrompt(),)).oracle("prompt")
    oracle32 = ScoringService(model32, (SoftPrompt(),)).oracle("prompt")
    buckets, cands_b = data.buckets(cfg.buckets)
    cands = np.asarray(cands)
    score = jax.jit(lambda o, p, t, m, c: o(p, ((t, m),), c))
    score_buckets = jax.jit(lambda o, p, bs: o(p, tuple((b[0], b[1]) for b in bs), cands))
    bucket_order = np.argsort(mask.sum(axis=1), kind="stable")  # the buckets' row order
    emb_std = float(jnp.std(model.params["embed"]))
    rng = np.random.default_rng(0)

    def prompts(p):
        shape = (p, cfg.prompt_len, model.cfg.hidden_size)
        return (emb_std * rng.standard_normal(shape)).astype(np.float32)

    pop = prompts(cfg.population)
    dev = [jnp.asarray(x) for x in (tokens, mask, cands)]
    batches = [(tokens, mask)] + [b[:2] for b in buckets]
    # Agreement in float32 (ours vs torch, every variant), then the timed dtypes.
    loop32, loop_buckets32, concat32, torch = torch_scorers(model.source, batches, cands)
    pop_t = torch.tensor(pop)
    ref = loop32(pop_t).numpy()
    ours_one = np.asarray(score(oracle32, jnp.asarray(pop), *dev))
    ours_out = np.asarray(score_buckets(oracle32, jnp.asarray(pop), buckets))
    diff = max(
        float(np.abs(ref - ours_one).max()),
        float(np.abs(ref[:, bucket_order] - ours_out).max()),
        float(np.abs(loop_buckets32(pop_t).numpy() - ours_out).max()),
    )
    # The torch loop in each dtype this CPU runs natively; the faster one is the reference.
    torch_loops = {"float32": (loop32, loop_buckets32, concat32)}
    if torch_dtype != "float32":
        torch_loops[torch_dtype] = torch_scorers(model.source, batches, cands, torch_dtype)[:3]
        if args.quick:  # on a native-bf16 CPU torch's bf16 loop is the faster one (3.6x here)
            del torch_loops["float32"]
    pop_j = jnp.asarray(pop)
    timed = interleaved_medians(
        {
            "ours": lambda: jax.block_until_ready(score_buckets(oracle, pop_j, buckets)),
            **{f"torch_loop_{dt}": lambda f=fns[0]: f(pop_t) for dt, fns in torch_loops.items()},
        },
        cfg.repeats,
    )
    loop_sec = {dt: timed[f"torch_loop_{dt}"] for dt in torch_loops}
    torch_dtype = min(loop_sec, key=loop_sec.get)
    loop, loop_buckets, concat = torch_loops[torch_dtype]
    print("torch loop s per generation: " + ", ".join(f"{k} {v:.2f}" for k, v in loop_sec.items())
          + f" -> reference dtype {torch_dtype}")  # fmt: skip
    ours_auto = np.asarray(score_buckets(oracle, jnp.asarray(pop), buckets))
    diff_auto = float(np.abs(ours_auto - ours_out).max())
    same_top1 = float(np.mean(ours_auto.argmax(-2) == ref[:, bucket_order].argmax(-2)))
    print(
        f"{auto.dtype} vs float32 (ours): max |log-prob diff| {diff_auto:.3f}; top class "
        f"agrees with torch float32 on {100 * same_top1:.1f}% of candidate-examples"
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
        "ours": timed["ours"],
        "ours_one_batch": median_time(
            lambda: score(oracle, jnp.asarray(pop), *dev).block_until_ready(), cfg.repeats
        ),
        "torch_loop": loop_sec[torch_dtype],
    }
    if not args.quick:  # the other torch variants (slow; --quick leaves them out)
        sec["torch_loop_buckets"] = median_time(lambda: loop_buckets(pop_t), cfg.repeats)
        sec["torch_concat"] = median_time(lambda: concat(pop_t), cfg.repeats)
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
        "speedup_one_batch": sec["torch_loop"] / sec["ours_one_batch"],
        **(
            {}
            if args.quick
            else {
                "speedup_same_padding": sec["torch_loop_buckets"] / sec["ours"],
                "speedup_vs_concat": sec["torch_concat"] / sec["ours"],
            }
        ),
        "ours_candidate_examples_per_s": n / sec["ours"],
        "per_candidate_ratio_max_over_min": (
            max(per_candidate.values()) / min(per_candidate.values()) if per_candidate else 1.0
        ),
        "es_step_vs_pycma_min": min(v[PYCMA] / v[cfg.es_strategy] for v in es.values()),
        "es_step_share_of_generation": es[key][cfg.es_strategy] / sec["ours"],
        "ours_dtype": auto.dtype,
        "torch_dtype": torch_dtype,
    }
    record = {
        **figures,
        "seconds": sec,
        "per_candidate_s": per_candidate,
        "es_step_s": es,
        "max_abs_logprob_diff": diff,
        "max_abs_logprob_diff_auto_vs_f32": diff_auto,
        "machine": machine,
        "quick": args.quick,
        "config": dataclasses.asdict(cfg),
        **stamp(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__,
    }
    write_record(RESULTS_QUICK if args.quick else RESULTS, record, indent=1)
    print_results(figures)
    return figures


if __name__ == "__main__":
    main()
