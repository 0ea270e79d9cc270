"""Benchmark answer-position scoring in float32 and bfloat16: ours vs transformers PyTorch.

What: the throughput (tokens/s, GFLOP/s) of scoring a B x S batch of token ids with logits
only at the last real token (full vocabulary head there), for our jitted
`cbp_jax.model.decoder.forward` and for transformers' `AutoModelForCausalLM` on the same GGUF
weights with `logits_to_keep=1`, each in float32 and in bfloat16 (ours: bf16 matmul inputs,
float32 accumulation and residual stream; torch: the model cast to bf16). Beside them, the
matmul peak of each framework and dtype, measured in the same run (jitted / eager 2048^3
products; bf16 inputs with float32 accumulation for JAX, plain bf16 for torch, each its
fastest form). All jobs are warmed up and then take turns within every repeat, so load from
other processes slows them alike and the ratios stay comparable (compare only ratios from
one run, on a quiet machine; say so when it was not).

Prints at the end:
  RESULT fraction_of_best_peak X        our best forward GFLOP/s (either dtype) over the best
                                        JAX matmul peak of any dtype in this run
  RESULT speedup_vs_torch_same_dtype Y  min over dtypes of torch seconds / our seconds
  RESULT auto_dtype NAME                what dtype="auto" picks on this machine
Run: `.venv/bin/python experiments/bench_forward.py [--batch 64 --seq 64 --repeats 5]`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import parser, print_results, stamp, torch_model, write_record

from cbp_jax.experiment.timing import interleaved_times
from cbp_jax.model import forward, load_model
from cbp_jax.model.precision import machine_info, resolve_dtype

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_forward.json"
DTYPES = ("float32", "bfloat16")
MATMUL_N, MATMUL_CALLS = 2048, 4  # calls per timed repeat: one product is too brief to time


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    model: str = "smollm2-135m"
    batch: int = 64
    seq: int = 64
    repeats: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in ("batch", "seq", "repeats"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"BenchConfig.{name} must be a positive int, got {value!r}")
        if self.repeats < 3:
            raise ValueError(f"BenchConfig.repeats must be >= 3 (median), got {self.repeats}")


def matmul_jobs(torch) -> dict:
    """Square-matmul peak jobs: JAX (jitted, f32 accumulation) and torch, in both dtypes."""
    jobs, n = {}, MATMUL_N
    mm = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    for dt in DTYPES:
        a = jax.random.normal(jax.random.key(0), (n, n), dt)
        b = jax.random.normal(jax.random.key(1), (n, n), dt)
        ta, tb = (torch.randn(n, n, dtype=getattr(torch, dt)) for _ in range(2))

        def jax_job(a=a, b=b):
            out = [mm(a, b) for _ in range(MATMUL_CALLS)]
            out[-1].block_until_ready()

        def torch_job(a=ta, b=tb):
            for _ in range(MATMUL_CALLS):
                torch.matmul(a, b)

        jobs[f"mm_jax_{dt}"], jobs[f"mm_torch_{dt}"] = jax_job, torch_job
    return jobs


def torch_model_job(source: str, dtype: str, tokens: np.ndarray, mask: np.ndarray):
    """transformers on the same GGUF weights in `dtype`: a job returning last-position logits."""
    torch, model = torch_model(source, dtype)
    ids, attn = torch.from_numpy(tokens).long(), torch.from_numpy(mask).long()

    def run():
        with torch.inference_mode():
            out = model(input_ids=ids, attention_mask=attn, logits_to_keep=1).logits[:, -1]
        return out.float().numpy()

    return run


def figures(sec: dict, flops: int, n_tok: int) -> dict:
    """Per-dtype throughputs and ratios, the peaks, and the three headline figures."""
    peak = {k: 2 * MATMUL_N**3 * MATMUL_CALLS / sec[k] / 1e9 for k in sec if k.startswith("mm_")}
    out = {f"peak_gflops_{k[3:]}": v for k, v in peak.items()}
    for dt in DTYPES:
        out[f"ours_tokens_per_s_{dt}"] = n_tok / sec[f"ours_{dt}"]
        out[f"torch_tokens_per_s_{dt}"] = n_tok / sec[f"torch_{dt}"]
        out[f"ours_gflops_{dt}"] = flops / sec[f"ours_{dt}"] / 1e9
        out[f"torch_gflops_{dt}"] = flops / sec[f"torch_{dt}"] / 1e9
        out[f"speedup_vs_torch_{dt}"] = sec[f"torch_{dt}"] / sec[f"ours_{dt}"]
    best_jax_peak = max(v for k, v in peak.items() if k.startswith("mm_jax"))
    out["best_jax_peak_gflops"] = best_jax_peak
    out["bf16_over_f32_ours"] = sec["ours_float32"] / sec["ours_bfloat16"]
    out["fraction_of_best_peak"] = max(out[f"ours_gflops_{dt}"] for dt in DTYPES) / best_jax_peak
    out["speedup_vs_torch_same_dtype"] = min(out[f"speedup_vs_torch_{dt}"] for dt in DTYPES)
    return out


def main(argv=None) -> dict:
    defaults = BenchConfig()
    names = ("model", "batch", "seq", "repeats", "seed")
    flags = {name: (getattr(defaults, name), name) for name in names}
    args = parser(__doc__.splitlines()[0], **flags, out=(RESULTS, "JSON record")).parse_args(argv)
    bc = BenchConfig(**{k: v for k, v in vars(args).items() if k != "out"})
    import torch

    auto = resolve_dtype("auto")
    machine = machine_info()
    print(f"{bc}\njax {jax.__version__} on {jax.devices()}, torch {torch.__version__}")
    print(f"machine: {machine}; auto dtype: {auto.dtype} ({auto.reason})")

    jobs, logits = {}, {}
    for dt in DTYPES:
        m = load_model(bc.model, dtype=dt)
        cfg = m.cfg
        rng = np.random.default_rng(bc.seed)  # both dtypes score the same tokens
        tokens = rng.integers(100, cfg.vocab_size, (bc.batch, bc.seq), dtype=np.int32)
        mask = np.ones_like(tokens)
        tok_j, mask_j = jnp.asarray(tokens), jnp.asarray(mask)
        score = jax.jit(lambda p, t, k, cfg=cfg: forward(p, cfg, t, k).logits)
        jobs[f"ours_{dt}"] = lambda f=score, p=m.params, t=tok_j, k=mask_j: f(
            p, t, k
        ).block_until_ready()
        run_torch = torch_model_job(m.source, dt, tokens, mask)
        jobs[f"torch_{dt}"] = run_torch
        ours = np.asarray(score(m.params, tok_j, mask_j), np.float32)
        logits[dt] = ours
        diff = float(np.max(np.abs(ours - run_torch())))
        print(
            f"{dt}: max |logits ours - torch| = {diff:.3g} (logit scale {np.abs(ours).max():.1f})"
        )
    jobs |= matmul_jobs(torch)
    times = interleaved_times(jobs, bc.repeats)
    sec = {name: statistics.median(t) for name, t in times.items()}
    sec |= {k: min(t) for k, t in times.items() if k.startswith("mm_")}  # a peak: its best
    for name, t in sec.items():
        print(f"{name:>18}: median {t * 1e3:8.1f} ms, fastest {min(times[name]) * 1e3:8.1f} ms")
    spread = max(max(t) / min(t) for t in times.values())
    if spread > 1.25:
        print(f"WARNING: slowest/fastest repeat of a job = {spread:.2f}: machine busy, noisy")

    n_tok = bc.batch * bc.seq
    flops = (
        cfg.matmul_flops_per_token(bc.seq) * n_tok + 2 * cfg.hidden_size * cfg.vocab_size * bc.batch
    )
    result = figures(sec, flops, n_tok)
    top1 = float(np.mean(logits["float32"].argmax(-1) == logits["bfloat16"].argmax(-1)))
    print(f"ours bf16 vs f32: same top-1 next token on {100 * top1:.1f}% of rows")
    for dt in DTYPES:
        print(
            f"{dt:>9}: ours {result[f'ours_tokens_per_s_{dt}']:7.0f} tok/s "
            f"({result[f'ours_gflops_{dt}']:5.0f} GFLOP/s), torch "
            f"{result[f'torch_tokens_per_s_{dt}']:7.0f} tok/s "
            f"({result[f'torch_gflops_{dt}']:5.0f}), "
            f"ours/torch {result[f'speedup_vs_torch_{dt}']:.2f}"
        )
    record = {
        **result,
        "auto_dtype": auto.as_dict(),
        "machine": machine,
        "max_repeat_spread": spread,
        "top1_agreement_bf16_f32": top1,
        "analytic_flops": flops,
        "seconds_per_repeat": times,
        "config": dataclasses.asdict(bc),
        **stamp(),
        "jax_version": jax.__version__,
        "torch_version": torch.__version__,
    }
    write_record(args.out, record)
    print(f"wrote {args.out}")
    keys = ("fraction_of_best_peak", "speedup_vs_torch_same_dtype")
    print_results({k: result[k] for k in keys} | {"auto_dtype": auto.dtype})
    return record


if __name__ == "__main__":
    main()
