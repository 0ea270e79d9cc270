"""The work behind `cbp-jax zero-shot`, `train-generator`, `customize` and `predict` (cli.py
parses). `predict` reloads a saved CBP task vector or tuned prompt and shows what the model
predicts with it: accuracy, predicted-class counts, confusion matrix and the majority-class
and chance baselines (on a run's test subset by default)."""

from __future__ import annotations

import dataclasses
import pathlib
import shlex
import sys
import time


def _command_line() -> str:
    return f"command: cbp-jax {shlex.join(sys.argv[1:])}"


def examples_for(args):
    """The examples a zero-shot or predict command scores: split "test" is the test subset
    of a run with the same --seed and --test-size (0 or more than the pool: the whole test
    pool); "train" and "all" are the task's pools."""
    from cbp_jax.data.splits import test_pool, test_subset
    from cbp_jax.data.tasks import load_examples

    if args.split == "test":
        size = args.test_size or None
        pool = len(test_pool(args.task, args.data_dir))
        if size is not None and size > pool:  # a run refuses this size; score the whole pool
            print(f"note: the test pool has {pool} examples; scoring all of them", file=sys.stderr)
            size = None
        return test_subset(args.task, args.seed, size, args.data_dir)
    examples = load_examples(args.task, args.split, args.data_dir)
    return examples[: args.limit] if args.limit else examples


def train_generator(args) -> None:
    from cbp_jax.data.tasks import domain_tasks
    from cbp_jax.methods.cbp_train import Stage1Config
    from cbp_jax.methods.cbp_train import train_generator as train
    from cbp_jax.model import load_model
    from cbp_jax.prompts.generator import GeneratorConfig

    exclude = tuple(x for x in args.exclude.split(",") if x)
    tasks = tuple(x for x in args.tasks.split(",") if x) or domain_tasks(args.domain, exclude)
    names = {f.name for f in dataclasses.fields(Stage1Config)} - {"tasks", "warmup"}
    fields = {k: v for k, v in vars(args).items() if k in names}
    cfg = Stage1Config(tasks=tasks, warmup=min(args.warmup, args.steps - 1), **fields)
    print(
        f"CBP stage 1: {cfg.steps} steps of {cfg.batch_size} examples on {', '.join(tasks)} "
        f"(a 2-core CPU takes about 2-3.5 s a step at the defaults: "
        f"{cfg.steps * 2.3 / 60:.0f}-{cfg.steps * 3.5 / 60:.0f} min)",
        flush=True,
    )
    model = load_model(args.model)
    gen_cfg = GeneratorConfig(hidden_size=model.cfg.hidden_size, prompt_len=args.prompt_len)
    start = time.time()
    result = train(model, cfg, gen_cfg, run_dir=args.out)
    last = result.history[-20:]
    loss = sum(h["loss"] for h in last) / max(len(last), 1)
    print(_command_line())
    print(
        f"CBP stage 1 on {', '.join(tasks)}: {cfg.steps} steps, mean loss of the last "
        f"{len(last)} steps {loss:.4f}; generator {result.artifact.generator_id} "
        f"(domain {result.artifact.domain}) saved to {args.out}/generator "
        f"[{time.time() - start:.0f}s]"
    )


def customize(args) -> None:
    from cbp_jax.data.tasks import get_task
    from cbp_jax.experiment.compile_cache import CompileStats
    from cbp_jax.experiment.remote import remote_of
    from cbp_jax.methods.calls import budget_lines
    from cbp_jax.methods.cbp import check_domain
    from cbp_jax.model import load_model
    from cbp_jax.model.precision import choose_dtype
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.run import config_of, run

    if bool(args.generator) == bool(args.url):
        raise SystemExit("cbp-jax customize: give --generator DIR (in process) or --url URL")
    start = time.time()
    stats = CompileStats().start()
    task = get_task(args.task)
    base = config_of(args, method="cbp")
    remote, model, where = remote_of(args), None, f"served at {args.url}"
    if remote is not None:
        domain = remote.release().domain
    else:
        dtype = choose_dtype(args.dtype)
        model = load_model(args.model, dtype=dtype.dtype)
        domain = load_generator(args.generator, expected_model=model).domain
        where = f"in {dtype.dtype} ({dtype.reason})"
    warning = check_domain(domain, task, args.allow_cross_domain)
    if warning:
        print(f"WARNING: {warning}", file=sys.stderr)
    print("\n".join(budget_lines(base.budget, base.population, base.chunk)), flush=True)
    zero_cfg = dataclasses.replace(base, method="zero_shot", generator="", tag="")
    zero = run(zero_cfg, model=model, remote=remote)
    cbp = run(base, model=model, remote=remote)
    compiled = stats.stop()
    print(_command_line())
    print("\n".join(customize_lines(base, task, zero, cbp, where)))
    if remote is not None:
        print(f"  calls charged for the test set: {zero['test_calls'] + cbp['test_calls']}")
    print(f"  task vector: {base.run_dir / 'task_vector'}")
    print(time_line(time.time() - start, compiled))


def customize_lines(cfg, task, zero: dict, cbp: dict, where: str) -> list[str]:
    """What `customize` prints after its runs: the model and where it ran, the k-shot sets' class
    counts, test accuracy and balanced accuracy of the majority class, zero-shot, z0 and
    stage 2, stage 2's predictions and confusion, and the verdict."""
    from cbp_jax.run_report import class_names, kshot_lines, label_summary, summary_lines, verdict

    splits, names = cfg.splits(), class_names(task)
    labels = label_summary([ex["label"] for ex in splits.test], task.num_classes)
    maj = labels["majority_class"]
    counts = ", ".join(f"{w} {c}" for w, c in zip(names, labels["label_counts"], strict=True))
    lines = [
        f"CBP-Tuning on {task.name} (seed {cfg.seed}), {cfg.model} {where}:",
        *kshot_lines(splits, task, cfg.kshot),
        f"  test set {len(splits.test)} examples: {counts}",
        f"  {'test':<44}{'accuracy':>9}{'balanced':>10}",
    ]

    def balanced(result: dict):
        return (result.get("prediction") or {}).get("balanced_acc")

    stage2 = f"  [{cbp['calls']} API calls, {cbp['generations']} generations, dev "
    majority = f"majority-class baseline (always {names[maj]!r})"
    rows = [
        (majority, labels["majority_acc"], 1 / len(names)),
        ("zero-shot", zero["test_acc"], balanced(zero)),
        ("CBP z0 (no stage 2)", cbp["test_acc_z0"], cbp.get("balanced_acc_z0")),
        ("CBP stage 2", cbp["test_acc"], balanced(cbp), f"{stage2}{cbp['dev_acc']:.4f}]"),
    ]
    for name, acc, bal, *extra in rows:
        bal = "" if bal is None else f"{bal:>10.4f}"
        lines.append(f"  {name:<44}{acc:>9.4f}{bal}{''.join(extra)}")
    if cbp.get("prediction"):
        lines.append("  stage 2 on test:")
        lines += summary_lines(cbp["prediction"], names)[1:]  # the baseline is in the table
    lines.append(verdict(cbp["test_acc"], cbp["test_acc_z0"], labels["majority_acc"]))
    return lines


def time_line(seconds: float, compiled: dict) -> str:
    """The command's seconds, split into XLA compilation (`CompileStats`) and the rest, and
    the machine they were measured on."""
    from cbp_jax.model.precision import cpu_flags, machine_info

    info = machine_info()
    avx512 = "yes" if any(f.startswith("avx512") for f in cpu_flags()) else "no"
    run_s = seconds - compiled["compile_seconds"]
    return (
        f"time: {seconds:.0f} s in all = {compiled['compile_seconds']:.0f} s compiling "
        f"({compiled['compilations']} programs compiled, {compiled['cache_hits']} loaded from "
        f"the compile cache) + {run_s:.0f} s running; on {info['cpu']}, "
        f"{info['cpu_count']} cores, AVX-512 {avx512}"
    )


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
    """`cbp-jax predict` (a saved vector or prompt) and `cbp-jax zero-shot` (the template
    alone): accuracy, predicted classes and confusion on the chosen examples."""
    from cbp_jax.data.tasks import get_task
    from cbp_jax.experiment.runner import zero_shot
    from cbp_jax.methods.evaluate import evaluate
    from cbp_jax.model import load_model
    from cbp_jax.run_report import class_names, summary_lines

    start = time.time()
    task = get_task(args.task)
    examples = examples_for(args)
    model = load_model(args.model, dtype=args.dtype)
    if args.command == "zero-shot":
        summary = zero_shot(model, task, examples, args.batch_size, progress=False)
        head, accuracy = f"zero-shot accuracy of {args.model}", ""
    else:
        service, kind, payload, what, meta = _payload(args, model)
        if not same_task(str(meta.get("task", "")), args.task):
            print(f"WARNING: this {what} was tuned on task {meta.get('task')!r}, not "
                  f"{args.task!r}", file=sys.stderr)  # fmt: skip
        summary = evaluate(service, model.tokenizer, task, examples, kind=kind, payload=payload)
        head, accuracy = f"{what} {pathlib.Path(args.vector or args.prompt)}", "accuracy "
    print(_command_line())
    print(
        f"{head} on {task.name} ({args.split}, {len(examples)} examples): "
        f"{accuracy}{summary['accuracy']:.4f}  [{time.time() - start:.1f}s]"
    )
    print("\n".join(summary_lines(summary, class_names(task))))
    return summary
