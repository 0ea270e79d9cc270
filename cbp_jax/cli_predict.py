"""`cbp-jax predict`: reload a saved CBP task vector or tuned prompt and show what the
model predicts with it on a task: accuracy, predicted-class counts, confusion matrix and
the majority-class and chance baselines (on a run's test subset by default)."""

from __future__ import annotations

import pathlib
import shlex
import sys
import time


def same_task(saved: str, given: str) -> bool:
    """Whether a task recorded with a saved vector or prompt names the task given now
    (a custom task may be recorded by another spelling of its config path)."""
    from cbp_jax.data.tasks import run_key

    if saved == given:
        return True
    try:
        return run_key(saved) == run_key(given)
    except (KeyError, FileNotFoundError, ValueError):
        return False


def _payload(args, model):
    """-> (scoring service, request kind, payload, what was loaded, its meta)."""
    from cbp_jax.methods.cbp import load_task_vector
    from cbp_jax.methods.saved_prompt import load_prompt
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt
    from cbp_jax.service.provider import bbt_adapters, cbp_service

    if bool(args.vector) == bool(args.prompt):
        raise SystemExit(
            "predict: give exactly one of --vector DIR (with --generator) or --prompt DIR"
        )
    if args.prompt:
        saved = load_prompt(args.prompt, expected_model=model)
        ids = saved.meta.get("p0_token_ids")  # the p0 BBT/BBTv2 scored the payload with
        adapters = bbt_adapters(tuple(ids)) if ids else (NoPrompt(), SoftPrompt(), DeepPrompt())
        service = ScoringService(model, adapters)
        return service, saved.kind, saved.payload, f"{saved.meta['method']} prompt", saved.meta
    if not args.generator:
        raise SystemExit("predict: a CBP task vector (--vector) needs its --generator DIR")
    artifact = load_generator(args.generator, expected_model=model)
    vec = load_task_vector(args.vector, release=artifact.release())
    service = cbp_service(model, artifact)
    return service, "task_vector", vec.z_R[None], "CBP task vector", vec.meta


def predict(args) -> dict:
    from cbp_jax.cli_commands import examples_for
    from cbp_jax.data.tasks import get_task
    from cbp_jax.methods.evaluate import evaluate
    from cbp_jax.model import load_model
    from cbp_jax.run_report import class_names, summary_lines

    start = time.time()
    task = get_task(args.task)
    examples = examples_for(args)
    model = load_model(args.model)
    service, kind, payload, what, meta = _payload(args, model)
    if not same_task(str(meta.get("task", "")), args.task):
        print(
            f"WARNING: this {what} was tuned on task {meta.get('task')!r}, not {args.task!r}",
            file=sys.stderr,
        )
    summary = evaluate(service, model.tokenizer, task, examples, kind=kind, payload=payload)
    source = pathlib.Path(args.vector or args.prompt)
    print(f"command: cbp-jax {shlex.join(sys.argv[1:])}")
    print(
        f"{what} {source} on {task.name} ({args.split}, {len(examples)} examples): "
        f"accuracy {summary['accuracy']:.4f}  [{time.time() - start:.1f}s]"
    )
    print("\n".join(summary_lines(summary, class_names(task))))
    return summary
