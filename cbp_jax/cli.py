"""Command line: `cbp-jax <command>` (or `python -m cbp_jax.cli`).

- `zero-shot`: accuracy of a model on a task with the template only.
- `train-generator`: CBP stage 1 (provider) on one domain's tasks, optionally leaving one
  out; writes a generator directory (resumes an interrupted run in the same directory).
- `customize`: CBP stage 2 (user) on one task with a saved generator: zero-shot, z0 and
  customized test accuracy, and the saved task vector.
- `serve`: the provider as an HTTP service (cbp_jax/serve): per-user API keys and budgets
  in SQLite, candidate log-probs only, concurrent requests packed into one compiled call.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time


def _zero_shot(args) -> None:
    from cbp_jax.data.tasks import get_task, load_examples
    from cbp_jax.methods.zero_shot import accuracy
    from cbp_jax.model import load_model

    task = get_task(args.task)
    examples = load_examples(args.task, args.split, args.data_dir)
    if args.limit:
        examples = examples[: args.limit]
    start = time.time()
    model = load_model(args.model, dtype=args.dtype)
    acc = accuracy(model, task, examples, batch_size=args.batch_size)
    print(f"command: cbp-jax {shlex.join(sys.argv[1:])}")
    print(
        f"zero-shot accuracy of {args.model} on {args.task}/{args.split} "
        f"({len(examples)} examples): {acc:.4f}  [{time.time() - start:.1f}s]"
    )


def _train_generator(args) -> None:
    from cbp_jax.data.tasks import domain_tasks
    from cbp_jax.methods.cbp import Stage1Config, train_generator
    from cbp_jax.model import load_model
    from cbp_jax.prompts.generator import GeneratorConfig

    exclude = tuple(x for x in args.exclude.split(",") if x)
    tasks = tuple(x for x in args.tasks.split(",") if x) or domain_tasks(args.domain, exclude)
    cfg = Stage1Config(
        tasks=tasks,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        z0_learning_rate=args.z0_lr,
        warmup=min(args.warmup, args.steps - 1),
        max_len=args.max_len,
        sampling=args.sampling,
        task_vectors=args.task_vectors,
        permute_options=args.permute_options,
        seed=args.seed,
    )
    model = load_model(args.model)
    gen_cfg = GeneratorConfig(hidden_size=model.cfg.hidden_size, prompt_len=args.prompt_len)
    start = time.time()
    result = train_generator(model, cfg, gen_cfg, run_dir=args.out)
    last = result.history[-20:]
    loss = sum(h["loss"] for h in last) / max(len(last), 1)
    print(f"command: cbp-jax {shlex.join(sys.argv[1:])}")
    print(
        f"CBP stage 1 on {', '.join(tasks)}: {cfg.steps} steps, mean loss of the last "
        f"{len(last)} steps {loss:.4f}; generator {result.artifact.generator_id} saved to "
        f"{args.out}/generator [{time.time() - start:.0f}s]"
    )


def _customize(args) -> None:
    from cbp_jax.model import load_model
    from cbp_jax.run import RunConfig, run

    start = time.time()
    model = load_model(args.model)
    base = RunConfig(
        task=args.task,
        method="cbp",
        model=args.model,
        shots=args.shots,
        kshot=args.kshot,
        seed=args.seed,
        test_size=args.test_size,
        budget=args.budget,
        population=args.population,
        generator=args.generator,
        cbp_sigma0=args.sigma0,
        out=args.out,
        tag=args.tag,
    )
    zero = run(dataclasses.replace(base, method="zero_shot", generator=""), model=model)
    cbp = run(base, model=model)
    print(f"command: cbp-jax {shlex.join(sys.argv[1:])}")
    print(f"CBP-Tuning on {args.task} ({base.shots} shots per class, seed {base.seed}):")
    print(f"  test accuracy, zero-shot           {zero['test_acc']:.4f}")
    print(f"  test accuracy, CBP z0 (no stage 2) {cbp['test_acc_z0']:.4f}")
    print(
        f"  test accuracy, CBP (stage 2)       {cbp['test_acc']:.4f}  "
        f"[{cbp['calls']} API calls, dev {cbp['dev_acc']:.4f}]"
    )
    print(f"  task vector: {base.run_dir / 'task_vector'}  [{time.time() - start:.0f}s]")


def _serve(args) -> None:
    from cbp_jax.serve.launch import run_serve

    run_serve(args)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="cbp-jax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    zs = sub.add_parser("zero-shot", help="zero-shot accuracy of a model on a task")
    zs.add_argument("--task", default="sst2")
    zs.add_argument("--split", default="dev")
    zs.add_argument("--limit", type=int, default=0, help="first N examples (0: all)")
    zs.add_argument("--model", default="smollm2-135m", help="registered name or path")
    zs.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    zs.add_argument("--batch-size", type=int, default=32)
    zs.add_argument("--data-dir", default=None)
    zs.set_defaults(func=_zero_shot)

    tg = sub.add_parser("train-generator", help="CBP stage 1: train a domain's generator")
    tg.add_argument("--domain", default="financial", help="commonsense, medical, financial")
    tg.add_argument("--exclude", default="", help="comma-separated tasks to leave out")
    tg.add_argument("--tasks", default="", help="explicit comma-separated tasks (no domain)")
    tg.add_argument("--out", required=True, help="run directory (checkpoints, log, generator)")
    tg.add_argument("--model", default="smollm2-135m")
    tg.add_argument("--steps", type=int, default=300)
    tg.add_argument("--batch-size", type=int, default=8)
    tg.add_argument("--lr", type=float, default=1e-3)
    tg.add_argument("--z0-lr", type=float, default=1e-2)
    tg.add_argument("--warmup", type=int, default=30)
    tg.add_argument("--max-len", type=int, default=192)
    tg.add_argument("--prompt-len", type=int, default=10)
    tg.add_argument("--sampling", default="uniform")
    tg.add_argument("--seed", type=int, default=0)
    tg.add_argument(
        "--task-vectors",
        action="store_true",
        help="one trained vector per task; z0 = their mean (see Stage1Config.task_vectors)",
    )
    tg.add_argument(
        "--permute-options",
        action="store_true",
        help="shuffle multiple-choice options in training (see Stage1Config.permute_options)",
    )
    tg.set_defaults(func=_train_generator)

    cu = sub.add_parser("customize", help="CBP stage 2: tune one task vector with CMA-ES")
    cu.add_argument("--task", default="sst2")
    cu.add_argument("--generator", required=True, help="saved generator directory")
    cu.add_argument("--model", default="smollm2-135m")
    cu.add_argument("--shots", type=int, default=16, help="per class, train and dev each")
    cu.add_argument(
        "--kshot",
        default="balanced",
        choices=["balanced", "natural"],
        help="k-shot class proportions: k per class, or k x classes in the pool's proportions",
    )
    cu.add_argument("--seed", type=int, default=42)
    cu.add_argument("--test-size", type=int, default=500)
    cu.add_argument("--budget", type=int, default=4000, help="API calls, train + dev")
    cu.add_argument("--population", type=int, default=20)
    cu.add_argument("--sigma0", type=float, default=0.5)
    cu.add_argument("--out", default="checkpoints/runs")
    cu.add_argument("--tag", default="", help="run-dir suffix, e.g. the generator's name")
    cu.set_defaults(func=_customize)

    sv = sub.add_parser("serve", help="serve the model over HTTP (scores only, per-user budgets)")
    sv.add_argument("--model", default="smollm2-135m", help="registered name or path")
    sv.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    sv.add_argument("--generator", default="", help="saved CBP generator directory (optional)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8321)
    sv.add_argument("--db", default="cbp_serve.sqlite", help="SQLite file: budgets and records")
    sv.add_argument("--users", default=None, help="file of NAME:KEY:BUDGET lines")
    sv.add_argument("--key", action="append", help="NAME:KEY:BUDGET (repeatable)")
    sv.add_argument("--batch-window-ms", type=float, default=10.0)
    sv.add_argument("--max-pack", type=int, default=32, help="requests per compiled call")
    sv.add_argument("--max-rows", type=int, default=64, help="candidates per compiled call")
    sv.add_argument("--max-body-bytes", type=int, default=8 << 20)
    sv.add_argument("--tiny-test-model", type=int, default=None, help=argparse.SUPPRESS)
    sv.add_argument("--exit-after-commits", type=int, default=0, help=argparse.SUPPRESS)
    sv.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
