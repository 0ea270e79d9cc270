"""Command line: `cbp-jax <command>` (or `python -m cbp_jax.cli`).

- `run`: one method on one task (the options of `python -m cbp_jax.run`).
- `zero-shot`: accuracy of a model on a task with the template only.
- `train-generator`: CBP stage 1 (provider) on one domain's tasks (resumes in its directory).
- `customize`: CBP stage 2 (user) with a saved generator: zero-shot, z0 and stage 2.
- `predict`: a saved task vector or tuned prompt's accuracy and confusion on a task.
- `serve`: the provider over HTTP (per-user keys and budgets, candidate log-probs only).
- `study NAME run|table|status`: a study of the checkout (studies/NAME/, cli_study.py);
  `post`, `rapt` and `table NAME`: shortcuts to a study's `run`, its options passed on.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from cbp_jax import cli_commands, cli_study
from cbp_jax.run import HELP


def _serve(args) -> None:
    from cbp_jax.serve.launch import revoke_key, run_serve

    revoke_key(args) if getattr(args, "serve_command", None) else run_serve(args)


def _run(args) -> None:
    from cbp_jax import run

    run.execute(args, f"cbp-jax {shlex.join(sys.argv[1:])}")


def _sub(sub, name: str, help: str, description: str = ""):
    return sub.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def _subset_options(p) -> None:
    """Which examples zero-shot and predict score (cli_commands.examples_for)."""
    p.add_argument("--task", default="sst2", help=HELP["task"])
    p.add_argument(
        "--split",
        default="test",
        help="test: a run's test subset (--seed, --test-size); train or all: those pools",
    )
    p.add_argument("--seed", type=int, default=42, help="seed of the run's test subset")
    p.add_argument(
        "--test-size", type=int, default=500, help="test examples (0 or over the pool: all of it)"
    )
    p.add_argument("--limit", type=int, default=0, help="train/all: first N examples (0: all)")
    p.add_argument(
        "--data-dir", default=None, help="shipped task files (None: $CBP_JAX_DATA_DIR or data/)"
    )


def _zero_shot_parser(sub) -> None:
    zs = _sub(sub, "zero-shot", "zero-shot accuracy of a model on a task, with what it predicts")
    _subset_options(zs)
    zs.add_argument("--model", default="smollm2-135m", help=HELP["model"])
    zs.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights")
    zs.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    zs.set_defaults(func=cli_commands.predict)


def _train_generator_parser(sub) -> None:
    tg = _sub(
        sub,
        "train-generator",
        "CBP stage 1: train a domain's generator",
        "CBP stage 1 (provider): train the prompt generator and z0 on one domain's tasks. "
        "A 2-core CPU takes about 2-3.5 s a step at the defaults (300 steps: 12-17 min).",
    )
    tg.add_argument("--domain", default="financial", help="commonsense, medical or financial")
    tg.add_argument("--exclude", default="", help="comma-separated tasks to leave out")
    tg.add_argument("--tasks", default="", help="explicit comma-separated tasks (no domain)")
    tg.add_argument("--out", required=True, help="run directory (checkpoints, log, generator)")
    tg.add_argument("--model", default="smollm2-135m", help=HELP["model"])
    tg.add_argument("--steps", type=int, default=300, help="optimiser steps")
    tg.add_argument("--batch-size", type=int, default=8, help="examples per step")
    tg.add_argument(
        "--lr", dest="learning_rate", type=float, default=1e-3, help="generator learning rate"
    )
    tg.add_argument(
        "--z0-lr", dest="z0_learning_rate", type=float, default=1e-2, help="z0 learning rate"
    )
    tg.add_argument("--warmup", type=int, default=30, help="learning-rate warmup steps")
    tg.add_argument("--max-len", type=int, default=192, help="tokens per example (longer: cut)")
    tg.add_argument("--prompt-len", type=int, default=10, help="soft-prompt tokens generated")
    tg.add_argument("--sampling", default="uniform", help="how steps pick tasks: uniform")
    tg.add_argument("--seed", type=int, default=0, help="initialisation and data order")
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
    tg.set_defaults(func=cli_commands.train_generator)


def _customize_parser(sub) -> None:
    """RunConfig's options of a CBP run (`run.add_options`), float32 by default."""
    from cbp_jax.experiment.remote import add_remote_options
    from cbp_jax.run import add_options

    cu = _sub(
        sub,
        "customize",
        "CBP stage 2: tune one task vector with CMA-ES",
        "CBP stage 2 (user): zero-shot, then CMA-ES over the task vector from the generator's "
        "z0 within the API budget; prints the calls and generations the budget buys first.",
    )
    cu.add_argument("--generator", default="", help="saved generator directory (in process)")
    cu.add_argument(
        "--allow-cross-domain",
        action="store_true",
        help="run a generator of another domain than the task's (off: that is an error)",
    )
    cu.add_argument("--sigma0", dest="cbp_sigma0", type=float, default=0.5, help=HELP["cbp_sigma0"])
    fields = ("task", "model", "shots", "kshot", "seed", "dtype", "test_size", "budget")
    add_options(cu, (*fields, "population", "out", "tag"), dtype="float32")
    add_remote_options(cu)  # or --url: a model served with `cbp-jax serve --generator`
    cu.set_defaults(func=cli_commands.customize)


def _predict_parser(sub) -> None:
    pr = _sub(
        sub,
        "predict",
        "reload a saved task vector or prompt and show what the model predicts",
        "Reload a CBP task vector (--vector, with its --generator) or a tuned prompt "
        "(--prompt: BBT, BBTv2 or prompt tuning, saved in the run directory) and print its "
        "accuracy, predicted-class counts, confusion matrix and the majority-class baseline.",
    )
    _subset_options(pr)
    pr.add_argument("--vector", default="", help="saved CBP task vector directory")
    pr.add_argument("--generator", default="", help="the vector's generator directory")
    pr.add_argument("--prompt", default="", help="saved prompt directory (<run dir>/prompt)")
    pr.add_argument("--model", default="smollm2-135m", help=HELP["model"])
    pr.set_defaults(func=cli_commands.predict, dtype="float32")


def _serve_parser(sub) -> None:
    sv = _sub(sub, "serve", "serve the model over HTTP (scores only, per-user budgets)")
    sv.add_argument("--model", default="smollm2-135m", help=HELP["model"])
    sv.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="weights")
    sv.add_argument("--generator", default="", help="saved CBP generator directory (optional)")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8321, help="port to listen on")
    sv.add_argument("--db", default="cbp_serve.sqlite", help="SQLite file: budgets and records")
    sv.add_argument("--users", default=None, help="file of NAME:KEY:BUDGET lines")
    sv.add_argument("--key", action="append", help="NAME:KEY:BUDGET (repeatable)")
    sv.add_argument("--batch-window-ms", type=float, default=0.0, help="packing window")
    sv.add_argument("--max-pack", type=int, default=1, help="requests per compiled call")
    sv.add_argument("--max-rows", type=int, default=64, help="candidates per compiled call")
    sv.add_argument("--max-body-bytes", type=int, default=8 << 20, help="largest request body")
    sv.set_defaults(func=_serve)
    keys = sv.add_subparsers(dest="serve_command").add_parser("keys", help="manage API keys")
    revoke = keys.add_subparsers(dest="keys_command", required=True).add_parser(
        "revoke", help="revoke a user's key now, in the running server too (queued work dropped)"
    )
    revoke.add_argument("name", help="the user's name")
    revoke.add_argument("--db", default="cbp_serve.sqlite", help="the server's SQLite file")


def _run_parser(sub) -> None:
    from cbp_jax.experiment.remote import add_remote_options
    from cbp_jax.run import add_options

    rp = _sub(sub, "run", "one method on one task (= python -m cbp_jax.run)",
              "Run one method on one task; the options are RunConfig's fields.")  # fmt: skip
    add_options(rp)
    add_remote_options(rp)
    rp.set_defaults(func=_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cbp-jax", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _run_parser,
        _zero_shot_parser,
        _train_generator_parser,
        _customize_parser,
        _predict_parser,
        _serve_parser,
    ):
        add(sub)
    cli_study.add_parsers(sub)
    return parser


def setup_process() -> None:
    """What a command-line process sets up before any command runs: transformers' advisory
    "PyTorch was not found" line off (torch is only a test dependency here), and JAX's
    persistent compilation cache on (`experiment.compile_cache`, under checkpoints/ of the
    working directory, created on first use), so a later run loads its programs."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from cbp_jax.experiment.compile_cache import enable_compile_cache

    enable_compile_cache()


def main(argv=None) -> None:
    """Parse and run one command. Started as a program (`argv` None: the `cbp-jax` script
    or `python -m cbp_jax.cli`), it first runs `setup_process`; a caller passing `argv`
    (tests, scripts) keeps its own process settings."""
    if argv is None:
        setup_process()
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["study"]:
        cli_study.dispatch(argv[1:])  # the study parses its own options
        return
    if argv[:1] and argv[0] in (*cli_study.TABLE_VERBS, "table") and argv[1:2] != ["-h"]:
        cli_study.dispatch_verb(argv)  # the study parses its own options
        return
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
