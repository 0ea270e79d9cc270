"""Run one resolved `RunConfig` (`run`, also `cbp_jax.run.run`): a `{method: run_fn}` table,
one result schema.

Every result has the test accuracy and its `prediction_summary`, the dtype (and why), the
commit, the config's identity and seconds. Black-box methods also record calls in the
papers' unit (dev calls apart), examples and tokens scored, generations, the history, the
budget curve (the kept prompt's test accuracy as the calls pass each `cfg.curve_budgets()`)
and the start point's dev accuracy (`start_dev_acc`: p0 alone for BBT/BBTv2, z0 for CBP);
BBT/BBTv2 also record `p0_text` (`cbp_jax.service.p0`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import jax
import numpy as np

from cbp_jax.experiment.remote import Remote


@dataclasses.dataclass
class Context:
    """What every method runner gets: config, model (a `UserSide` when remote), task, splits,
    k-shot inputs, and the served model's address when the run goes over HTTP."""

    cfg: object
    model: object
    task: object
    splits: object
    train: object
    dev: object
    progress: bool
    remote: Remote | None = None

    def evaluator(self, build):
        """The unbudgeted service: `build(None)` in process, else over HTTP (the test part)."""
        if self.remote is None:
            return build(None)
        return self.remote.service(self.cfg, self.model.tokenizer, "test")

    def services(self, build):
        """(evaluator, service with the run's budget): `build(budget)` in process, else over
        HTTP."""
        if self.remote is None:
            return build(None), build(self.cfg.budget)
        search = self.remote.service(self.cfg, self.model.tokenizer, "search")
        return self.evaluator(build), search

    def test(self, evaluator, kind: str, payload, progress: bool = False) -> dict:
        """The `prediction_summary` of a payload on the test subset (labels stay here)."""
        from cbp_jax.methods import evaluate

        return evaluate.evaluate(evaluator, self.model.tokenizer, self.task, self.splits.test,
                                 kind=kind, payload=payload, progress=progress)  # fmt: skip

    def engine_kwargs(self, evaluator, kind: str, to_payload) -> dict:
        """The engine's run_dir, progress and budget-curve hook (scores the kept z on test)."""

        def on_milestone(best_z):
            summary = self.test(evaluator, kind, to_payload(np.asarray(best_z, np.float32)))
            return {"test_acc": summary["accuracy"], "balanced_acc": summary["balanced_acc"]}

        return {
            "run_dir": self.cfg.run_dir / "es",
            "progress": self.progress,
            "milestones": tuple(self.cfg.curve_budgets()),
            "on_milestone": on_milestone,
        }


def _blackbox_fields(res, service) -> dict:
    return {
        "dev_acc": res.best_dev_acc,
        "start_dev_acc": res.start_dev_acc,
        "generations": res.generations,
        "history": res.history,
        "calls": service.calls_used,
        "dev_calls": res.dev_calls,
        "examples_scored": res.examples_scored,
        "tokens_scored": res.tokens_scored,
        "curve": [m for h in res.history for m in h.get("milestones", ())],
        "resumed_at_generation": res.resumed_at_generation,  # "seconds" timed from there
    }


def _bbt_services(ctx: Context, result: dict):
    """Provider side: BBT/BBTv2's services (an evaluator, and one with the run's budget) with
    p0 for the served model; records the decoded prefix as `p0_text` ("" for no p0)."""
    from cbp_jax.service import ScoringService
    from cbp_jax.service.p0 import p0_text
    from cbp_jax.service.provider import bbt_adapters

    if ctx.remote is not None and ctx.cfg.p0 != "zero":
        raise ValueError(
            f"p0={ctx.cfg.p0!r} is added by the provider, and a served model adds none: run "
            "BBT over --url with --p0 zero"
        )
    ids = ctx.cfg.p0_token_ids(ctx.model.tokenizer)
    result["p0_text"] = p0_text(ctx.model.tokenizer, ids)
    adapters = bbt_adapters(ids)
    return ctx.services(lambda budget: ScoringService(ctx.model, adapters, budget=budget))


def zero_shot(model, task, examples, batch_size: int = 32, progress: bool = True) -> dict:
    """The zero-shot `prediction_summary` (the template alone, no prompt) of a loaded model on
    examples of a task, scored through the service."""
    from cbp_jax.methods.evaluate import evaluate

    service = _no_prompt(model)
    return evaluate(service, model.tokenizer, task, examples, batch_size=batch_size,
                    progress=progress)  # fmt: skip


def _no_prompt(model):
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import NoPrompt

    return ScoringService(model, (NoPrompt(),))


def run_zero_shot(ctx: Context, result: dict):
    return ctx.evaluator(lambda _budget: _no_prompt(ctx.model)), "none", None


def run_bbt(ctx: Context, result: dict):
    from cbp_jax.methods.bbt import bbt_parameterization
    from cbp_jax.methods.blackbox import run_blackbox

    cfg = ctx.cfg
    evaluator, service = _bbt_services(ctx, result)
    param = bbt_parameterization(jax.random.key(cfg.seed), service.public_info(), cfg.projection())

    def to_payload(z_R):
        return np.asarray(param.payload_fn(param.payload_params, z_R[None]))

    engine = ctx.engine_kwargs(evaluator, "prompt", to_payload)
    res = run_blackbox(service, param, ctx.train, ctx.dev, cfg.blackbox(), **engine)
    result.update(_blackbox_fields(res, service), best_z=np.asarray(res.best_z).tolist())
    return evaluator, "prompt", to_payload(np.asarray(res.best_z, np.float32))


def run_bbtv2(ctx: Context, result: dict):
    from cbp_jax.methods.bbt import run_bbtv2

    cfg = ctx.cfg
    evaluator, service = _bbt_services(ctx, result)
    layers = tuple(int(x) for x in cfg.bbtv2_layers.split(",") if x) or None
    deep, phases = run_bbtv2(
        service, ctx.train, ctx.dev, cfg.blackbox(), cfg.projection(),
        layers=layers, run_dir=cfg.run_dir / "es", progress=ctx.progress,
    )  # fmt: skip
    # dev figures and the call ledger are the run's, in every layer; generations are rounds
    result.update(_blackbox_fields(phases[0], service), layers_tuned=[p.layer for p in phases])
    result["history"] = sorted((h for p in phases for h in p.history), key=lambda h: h["calls"])
    return evaluator, "deep_prompt", np.asarray(deep)[:, None]


def run_prompt_tuning(ctx: Context, result: dict):
    from cbp_jax.methods.prompt_tuning import tune_prompt
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import SoftPrompt

    model, pt = ctx.model, ctx.cfg.prompt_tuning()
    prompt, dev_acc, history = tune_prompt(
        model.params, model.cfg, ctx.train, ctx.dev, pt, progress=ctx.progress
    )
    result.update(dev_acc=dev_acc, history=history)
    return ScoringService(ctx.model, (SoftPrompt(),)), "prompt", np.asarray(prompt)[None]


def run_cbp(ctx: Context, result: dict):
    """CBP z0 (no stage 2) or CBP stage 2 from z0, with the provider's generator."""
    from cbp_jax.methods.cbp import customize, domain_mismatch, save_task_vector
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.service.provider import cbp_service

    cfg = ctx.cfg
    if ctx.remote is None:
        artifact = load_generator(cfg.generator, expected_model=ctx.model)
        evaluator, service = ctx.services(lambda b: cbp_service(ctx.model, artifact, budget=b))
        release, info = artifact.release(), {"path": cfg.generator, **artifact.info}
    else:  # the provider publishes the release; its generator stays with it
        evaluator, service = ctx.services(None)  # nothing to build here
        release, info = ctx.remote.release(), {"url": ctx.remote.url}
    if warning := domain_mismatch(release.domain, ctx.task):
        print(f"WARNING: {warning}", file=sys.stderr)
    result["generator"] = {"id": release.generator_id, **info}
    z = np.asarray(release.z0_R, np.float32)  # all the user gets: r, z0, ids
    if cfg.method == "cbp":
        z0 = ctx.test(evaluator, "task_vector", z[None])
        result["test_acc_z0"], result["balanced_acc_z0"] = z0["accuracy"], z0["balanced_acc"]
        engine = ctx.engine_kwargs(evaluator, "task_vector", lambda z_R: z_R[None])
        res = customize(service, release, ctx.train, ctx.dev, cfg.blackbox(), **engine)
        z = np.asarray(res.best_z, np.float32)
        save_task_vector(cfg.run_dir / "task_vector", z, task=cfg.task, release=release)
        result.update(_blackbox_fields(res, service))
    return evaluator, "task_vector", z[None]


METHODS = {
    "zero_shot": run_zero_shot,
    "bbt": run_bbt,
    "bbtv2": run_bbtv2,
    "prompt_tuning": run_prompt_tuning,
    "cbp_z0": run_cbp,
    "cbp": run_cbp,
}


def run(cfg, progress: bool = True, model=None, remote=None) -> dict:
    """Run `cfg` (a RunConfig) through its method's runner, score it on the test subset, save a
    tuned prompt for `cbp-jax predict` and write result.json; `model`: already loaded for
    cfg.model and its dtype; `remote`: run against a served model over HTTP instead (no
    weights here: zero-shot, BBT/BBTv2 with p0 = zero, CBP z0 and stage 2)."""
    from cbp_jax.data.batching import make_inputs
    from cbp_jax.data.tasks import get_task
    from cbp_jax.experiment.identity import git_commit
    from cbp_jax.methods.saved_prompt import save_prompt
    from cbp_jax.model import load_model
    from cbp_jax.model.precision import choose_dtype

    start, start_cpu = time.time(), time.process_time()
    task, splits = get_task(cfg.task), cfg.splits()
    if remote is None:
        dtype = choose_dtype(cfg.dtype)
        model = load_model(cfg.model, dtype=dtype.dtype) if model is None else model
        dtype = {**dtype.as_dict(), "model_dtype": model.cfg.dtype}
    elif cfg.method == "prompt_tuning":
        raise ValueError("prompt tuning is white-box: it needs the weights, not a --url")
    else:
        model, dtype = remote.user_side(cfg.model), {"served": remote.url}
    train, dev = (make_inputs(model.tokenizer, task, s) for s in (splits.train, splits.dev))
    ctx = Context(cfg, model, task, splits, train, dev, progress, remote)
    result = {
        "config": dataclasses.asdict(cfg),
        "identity": cfg.identity(),
        "commit": git_commit(),
        "dtype": dtype,
        "n_train": len(splits.train),
        "n_dev": len(splits.dev),
        "n_test": len(splits.test),
    }
    evaluator, kind, payload = METHODS[cfg.method](ctx, result)
    summary = ctx.test(evaluator, kind, payload, progress=progress)
    result["test_acc"] = summary["accuracy"]
    result["prediction"] = summary
    if remote is not None:  # scoring the test set over HTTP is charged like any call
        result["test_calls"] = evaluator.calls_used
    if kind in ("prompt", "deep_prompt") and remote is None:  # `predict` needs the weights
        ids = cfg.p0_token_ids(model.tokenizer) if cfg.method in ("bbt", "bbtv2") else None
        save_prompt(cfg.run_dir / "prompt", kind, payload, task=cfg.task, model=model,
                    method=cfg.method, p0_token_ids=ids)  # fmt: skip
    result["seconds"] = time.time() - start  # wall time, including any time stopped
    # CPU time of all this process's threads: unlike wall time it excludes time the process
    # spent stopped (SIGSTOP) or waiting for the cores; on a C-core CPU it is up to C x wall
    result["cpu_seconds"] = time.process_time() - start_cpu
    result["device"] = jax.devices()[0].device_kind
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "result.json").write_text(json.dumps(result, indent=1, default=_plain))
    return result


def _plain(x):
    return x.tolist() if hasattr(x, "tolist") else str(x)
