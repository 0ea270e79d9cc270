"""Command line: `cbp-jax <command>` (or `python -m cbp_jax.cli`)."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
