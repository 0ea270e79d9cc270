"""Benchmark the shared-prompt path (prompt computed once per candidate) for each model family.

What: one BBT generation's scoring work, P candidate soft prompts of T = 50 rows on a batch
of real financial_phrasebank k-shot inputs (answer-position candidate logits), timed two
ways on the same jitted population loop: `decoder.forward_shared_prompt` (the prompt as a
single T-row block, T + B*S rows per candidate) and `decoder.forward` with the prompt
broadcast to the batch (B*(T + S) rows).
Both give the same numbers: `--agreement-only` adds, per model, each path's largest
log-prob difference in float32 and bfloat16 from float32 broadcast (2 prompts); the timed
run reports the largest difference between the paths in the auto dtype. Interleaved
repeats, medians; the ratio is what to read (the CPU and its load are in the output).

Run: `.venv/bin/python experiments/bench_shared_prefix.py [--models smollm2-135m,gemma3-270m]`
(a few minutes on 2 cores). Writes experiments/results/bench_shared_prefix.json and ends
with `RESULT shared_vs_broadcast_<model> <x>` per model.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from bench_common import kshot_inputs, parser, stamp, write_record

from cbp_jax.experiment.timing import interleaved_medians
from cbp_jax.model import load_model
from cbp_jax.model.decoder import forward, forward_shared_prompt
from cbp_jax.model.precision import machine_info

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "bench_shared_prefix.json"


def scorers(model, tokens, mask, cands):
    """Two jitted population scorers, P x T x D prompts -> P x B x C log-probs."""
    params, cfg = model.params, model.cfg
    b = tokens.shape[0]

    def shared(p_TxD):
        logits = forward_shared_prompt(
            params, cfg, tokens, mask, prompt_TxD=p_TxD, candidates=cands
        )
        return jax.nn.log_softmax(logits)

    def broadcast(p_TxD):
        p_BxTxD = jnp.broadcast_to(p_TxD, (b, *p_TxD.shape))
        out = forward(params, cfg, tokens, mask, prompt_BxTxD=p_BxTxD, candidates=cands)
        return jax.nn.log_softmax(out.logits)

    return {
        "shared": jax.jit(lambda pop: jax.lax.map(shared, pop)),
        "broadcast": jax.jit(lambda pop: jax.lax.map(broadcast, pop)),
    }


def setup(name: str, dtype: str, population: int, prompt_len: int):
    """The model, its two scorers and P random prompts (embedding-table scale, seed 0)."""
    model = load_model(name, dtype=dtype)
    data = kshot_inputs(model.tokenizer, "financial_phrasebank", 8)
    tokens, mask = jnp.asarray(data.tokens_BxS), jnp.asarray(data.mask_BxS)
    cands = jnp.asarray(np.asarray(data.candidates_CxW)[:, 0])
    emb_std = float(jnp.std(model.params["embed"].astype(jnp.float32)))
    rng = np.random.default_rng(0)
    shape = (population, prompt_len, model.cfg.hidden_size)
    pop = jnp.asarray((emb_std * rng.standard_normal(shape)).astype(np.float32))
    return model, tokens, mask, scorers(model, tokens, mask, cands), pop


def dtype_agreement(name: str, prompt_len: int, population: int = 2) -> dict:
    """Max |log-prob difference| of each (dtype, path) from float32 broadcast (the reference)."""
    outs = {}
    for dtype in ("float32", "bfloat16"):
        *_, fns, pop = setup(name, dtype, population, prompt_len)
        outs.update({f"{dtype} {k}": np.asarray(f(pop)) for k, f in fns.items()})
    ref = outs["float32 broadcast"]
    return {k: float(np.max(np.abs(v - ref))) for k, v in outs.items() if k != "float32 broadcast"}


def bench_model(name: str, population: int, prompt_len: int, repeats: int) -> dict:
    model, tokens, mask, fns, pop = setup(name, "auto", population, prompt_len)
    outs = {k: np.asarray(f(pop)) for k, f in fns.items()}  # compile + agreement
    times = interleaved_medians(
        {k: lambda f=f: f(pop).block_until_ready() for k, f in fns.items()}, repeats
    )
    b, s = tokens.shape
    return {
        "dtype": model.cfg.dtype,
        "batch": [int(b), int(s)],
        "real_tokens": int(mask.sum()),
        "seconds": times,
        "shared_vs_broadcast": times["broadcast"] / times["shared"],
        "max_abs_logprob_diff": float(np.max(np.abs(outs["shared"] - outs["broadcast"]))),
    }


def main(argv=None) -> None:
    agreement = "only the float32/bfloat16 agreement of both paths, added to the existing JSON"
    p = parser(__doc__.splitlines()[0], models="smollm2-135m,gemma3-270m", population=20,
               prompt_len=50, repeats=3, agreement_only=(False, agreement))  # fmt: skip
    args = p.parse_args(argv)
    if args.agreement_only:
        out = json.loads(RESULTS.read_text())
        for name in args.models.split(","):
            agree = dtype_agreement(name, args.prompt_len)
            out["models"][name]["agreement_vs_float32_broadcast"] = agree
            print(name, json.dumps(agree), flush=True)
        write_record(RESULTS, out, indent=1)
        return
    out = {
        "date": stamp()["date"],
        "machine": machine_info(),
        "config": {"population": args.population, "prompt_len": args.prompt_len},
        "models": {},
    }
    for name in args.models.split(","):
        out["models"][name] = r = bench_model(name, args.population, args.prompt_len, args.repeats)
        print(name, json.dumps(r), flush=True)
    write_record(RESULTS, out, indent=1)
    for name, r in out["models"].items():
        print(f"RESULT shared_vs_broadcast_{name} {r['shared_vs_broadcast']:.2f}")


if __name__ == "__main__":
    main()
