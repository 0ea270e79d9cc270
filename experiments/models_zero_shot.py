"""Zero-shot accuracy on every shipped task for both registered models, and their forward speed.

Zero-shot goes through the project's own path (`cbp_jax.run` with method zero_shot: the
seeded test subset, the scoring service, candidate log-probs at the answer position) with
each model loaded once (a finished run of the same model, test subset and dtype in --out is
reused). The benchmark times the jitted answer-position forward of both
models on the same random B x S batch (full-vocabulary head at the answer position),
warmed up, the models taking turns in every repeat; median tokens/s.

Run: `.venv/bin/python experiments/models_zero_shot.py --test-size 200` (writes
experiments/results/models.json and prints the table rows).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.splits import test_pool
from cbp_jax.data.tasks import task_names
from cbp_jax.model import dispatch, load_model
from cbp_jax.run import RunConfig, run

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "models.json"
MODELS = ("smollm2-135m", "gemma3-270m")
SHOTS = 8  # unused by zero-shot, but the splits must exist (copa has 28 per class)


def _recorded(out: str, task: str, cfg: RunConfig) -> dict | None:
    """A finished zero-shot result of the same model, test subset and dtype, if any (the
    k-shot sets play no part in zero-shot, so their size may differ)."""
    same = ("model", "seed", "test_size", "dtype", "method")
    for f in pathlib.Path(out).glob(f"{task}/zero_shot/*/result.json"):
        result = json.loads(f.read_text())
        if all(result["config"][k] == getattr(cfg, k) for k in same):
            return result
    return None


def zero_shot(model, name: str, tasks, test_size: int, dtype: str, out: str) -> dict:
    rows = {}
    for task in tasks:
        cfg = RunConfig(
            task=task,
            method="zero_shot",
            model=name,
            shots=SHOTS,
            test_size=min(test_size, len(test_pool(task))),  # copa's pool has 49
            dtype=dtype,
            out=out,
        )
        result = _recorded(out, task, cfg) or run(cfg, progress=False, model=model)
        rows[task] = {
            "accuracy": result["test_acc"],
            "majority_acc": result["prediction"]["majority_acc"],
            "n_test": result["n_test"],
            "seconds": result["seconds"],
        }
        print(f"{name} {task}: {result['test_acc']:.3f} ({result['seconds']:.0f} s)", flush=True)
    return rows


def bench(models: dict, batch: int, seq: int, repeats: int) -> dict:
    fns, inputs = {}, {}
    for name, m in models.items():
        rng = np.random.default_rng(0)
        tokens = jnp.asarray(rng.integers(3, 1000, (batch, seq)), jnp.int32)
        mask = jnp.ones_like(tokens)
        fn = jax.jit(lambda p, t, k, cfg=m.cfg: dispatch.forward(p, cfg, t, k).logits)
        fn(m.params, tokens, mask).block_until_ready()  # compile and warm up
        fns[name], inputs[name] = fn, (m.params, tokens, mask)
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(*inputs[name]).block_until_ready()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"tokens_per_s": batch * seq / statistics.median(t), "seconds": t}
        for name, t in times.items()
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--test-size", type=int, default=200)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tasks", default=",".join(task_names()))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--no-bench", action="store_true", help="zero-shot only")
    p.add_argument("--out", default="checkpoints/models_zero_shot")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    names = args.models.split(",")
    models = {name: load_model(name, dtype=args.dtype) for name in names}
    record = {"args": vars(args), "zero_shot": {}, "bench": {}}
    for name, model in models.items():
        record["zero_shot"][name] = zero_shot(
            model, name, tasks, args.test_size, args.dtype, args.out
        )
    if not args.no_bench:
        record["bench"] = bench(models, args.batch, args.seq, args.repeats)
    if set(names) == set(MODELS) and not args.no_bench:
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print("| task | " + " | ".join(names) + " | majority |")
    for task in tasks:
        accs = [record["zero_shot"][m][task]["accuracy"] for m in names]
        maj = record["zero_shot"][names[0]][task]["majority_acc"]
        print(f"| {task} | " + " | ".join(f"{100 * a:.1f}" for a in accs) + f" | {100 * maj:.1f} |")
    for name, b in record["bench"].items():
        print(f"bench {name}: {b['tokens_per_s']:.0f} tokens/s at {args.batch} x {args.seq}")


if __name__ == "__main__":
    main()
