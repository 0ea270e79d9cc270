"""Run one resolved `RunConfig` (cbp_jax.run): a `{method: run_fn}` table, one result schema.

Every method fills the same result: test accuracy and its `prediction_summary` (predicted
classes, confusion, majority-class and chance baselines), the dtype it computed in (and
why), the commit, the config's identity hash and seconds. Black-box methods (BBT, BBTv2,
CBP stage 2) also record calls in the papers' unit (one candidate on one k-shot batch), dev
calls apart, examples and tokens scored, generations, the per-generation history and the
budget curve: the kept prompt's test accuracy when the calls first pass each of
`cfg.curve_budgets()` (from one run), and the start point's dev accuracy (`start_dev_acc`:
z = 0, i.e. p0 alone, for BBT/BBTv2; z0 for CBP). BBT/BBTv2 also record `p0_text`, the
decoded prefix p0 is the embeddings of (`cbp_jax.service.p0`), and save their best prompt
for `cbp-jax predict`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import jax
import numpy as np

from cbp_jax.experiment.identity import git_commit


@dataclasses.dataclass
class Context:
    """What every method runner gets: config, model, task, splits, k-shot inputs."""

    cfg: object
    model: object
    task: object
    splits: object
    train: object
    dev: object
    progress: bool

    def engine_kwargs(self, evaluator, kind: str, to_payload) -> dict:
        """The engine's run_dir, progress and budget-curve hook (scores the kept z on test)."""
        from cbp_jax.methods import evaluate

        def on_milestone(best_z):
            payload = to_payload(np.asarray(best_z, np.float32))
            summary = evaluate.evaluate(
                evaluator,
                self.model.tokenizer,
                self.task,
                self.splits.test,
                kind=kind,
                payload=payload,
            )
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


def _p0(ctx: Context, result: dict):
    """Provider side: BBT/BBTv2's p0 token ids for the served model; records the decoded
    prefix as `p0_text` ("" for no p0)."""
    from cbp_jax.service.p0 import p0_text

    ids = ctx.cfg.p0_token_ids(ctx.model.tokenizer)
    result["p0_text"] = p0_text(ctx.model.tokenizer, ids)
    return ids


def run_zero_shot(ctx: Context, result: dict):
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import NoPrompt

    return ScoringService(ctx.model, (NoPrompt(),)), "none", None


def run_bbt(ctx: Context, result: dict):
    from cbp_jax.methods.bbt import bbt_parameterization
    from cbp_jax.methods.blackbox import run_blackbox
    from cbp_jax.service import ScoringService
    from cbp_jax.service.provider import bbt_adapters

    cfg, proj = ctx.cfg, ctx.cfg.projection()
    adapters = bbt_adapters(_p0(ctx, result))
    evaluator = ScoringService(ctx.model, adapters)
    service = ScoringService(ctx.model, adapters, budget=cfg.budget)
    param = bbt_parameterization(jax.random.key(cfg.seed), service.public_info(), proj)

    def to_payload(z_R):
        return np.asarray(param.payload_fn(param.payload_params, z_R[None]))

    engine = ctx.engine_kwargs(evaluator, "prompt", to_payload)
    res = run_blackbox(service, param, ctx.train, ctx.dev, cfg.blackbox(cfg.sigma0), **engine)
    result.update(_blackbox_fields(res, service), best_z=np.asarray(res.best_z).tolist())
    return evaluator, "prompt", to_payload(np.asarray(res.best_z, np.float32))


def run_bbtv2(ctx: Context, result: dict):
    from cbp_jax.methods.bbt import run_bbtv2
    from cbp_jax.service import ScoringService
    from cbp_jax.service.provider import bbt_adapters

    cfg, proj = ctx.cfg, ctx.cfg.projection()
    adapters = bbt_adapters(_p0(ctx, result))
    evaluator = ScoringService(ctx.model, adapters)
    service = ScoringService(ctx.model, adapters, budget=cfg.budget)
    layers = tuple(int(x) for x in cfg.bbtv2_layers.split(",") if x) or None
    deep, phases = run_bbtv2(
        service,
        ctx.train,
        ctx.dev,
        cfg.blackbox(cfg.bbtv2_sigma0),
        proj,
        layers=layers,
        run_dir=cfg.run_dir / "es",
        progress=ctx.progress,
    )
    run_totals = phases[0]  # dev figures and the call ledger are the run's, in every layer
    result.update(
        dev_acc=run_totals.best_dev_acc,
        start_dev_acc=run_totals.start_dev_acc,
        generations=run_totals.generations,  # rounds: every layer's ES steps once per round
        layers_tuned=[p.layer for p in phases],
        history=sorted((h for p in phases for h in p.history), key=lambda h: h["calls"]),
        calls=service.calls_used,
        dev_calls=run_totals.dev_calls,
        examples_scored=run_totals.examples_scored,
        tokens_scored=run_totals.tokens_scored,
    )
    return evaluator, "deep_prompt", np.asarray(deep)[:, None]


def run_prompt_tuning(ctx: Context, result: dict):
    from cbp_jax.methods.prompt_tuning import PromptTuningConfig, tune_prompt
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import SoftPrompt

    cfg = ctx.cfg
    pt = PromptTuningConfig(
        prompt_len=cfg.prompt_len, epochs=cfg.pt_epochs, learning_rate=cfg.pt_lr, seed=cfg.seed
    )
    prompt, dev_acc, history = tune_prompt(
        ctx.model.params, ctx.model.cfg, ctx.train, ctx.dev, pt, progress=ctx.progress
    )
    result.update(dev_acc=dev_acc, history=history)
    return ScoringService(ctx.model, (SoftPrompt(),)), "prompt", np.asarray(prompt)[None]


def run_cbp(ctx: Context, result: dict):
    """CBP z0 (no stage 2) or CBP stage 2 from z0, with the provider's generator."""
    from cbp_jax.methods import evaluate
    from cbp_jax.methods.cbp import customize, save_task_vector
    from cbp_jax.methods.domains import domain_mismatch
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.service.provider import cbp_service

    cfg = ctx.cfg
    artifact = load_generator(cfg.generator, expected_model=ctx.model)
    if warning := domain_mismatch(artifact.domain, ctx.task):
        print(f"WARNING: {warning}", file=sys.stderr)
    release = artifact.release()  # all the user gets: r, z0, ids
    evaluator = cbp_service(ctx.model, artifact)
    result["generator"] = {"path": cfg.generator, "id": release.generator_id, **artifact.info}
    z = np.asarray(release.z0_R, np.float32)
    if cfg.method == "cbp":
        z0 = evaluate.evaluate(
            evaluator,
            ctx.model.tokenizer,
            ctx.task,
            ctx.splits.test,
            kind="task_vector",
            payload=z[None],
        )
        result["test_acc_z0"], result["balanced_acc_z0"] = z0["accuracy"], z0["balanced_acc"]
        service = cbp_service(ctx.model, artifact, budget=cfg.budget)
        engine = ctx.engine_kwargs(evaluator, "task_vector", lambda z_R: z_R[None])
        res = customize(
            service, release, ctx.train, ctx.dev, cfg.blackbox(cfg.cbp_sigma0), **engine
        )
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


def run(cfg, progress: bool = True, model=None) -> dict:
    """Run `cfg` (a RunConfig); `model`: an already loaded model for cfg.model and dtype."""
    from cbp_jax.data.batching import make_inputs
    from cbp_jax.data.tasks import get_task
    from cbp_jax.methods import evaluate
    from cbp_jax.model import load_model
    from cbp_jax.model.precision import choose_dtype

    start, start_cpu = time.time(), time.process_time()
    dtype = choose_dtype(cfg.dtype)
    task, splits = get_task(cfg.task), cfg.splits()
    model = load_model(cfg.model, dtype=dtype.dtype) if model is None else model
    tok = model.tokenizer
    ctx = Context(
        cfg,
        model,
        task,
        splits,
        make_inputs(tok, task, splits.train),
        make_inputs(tok, task, splits.dev),
        progress,
    )
    result = {
        "config": dataclasses.asdict(cfg),
        "identity": cfg.identity(),
        "commit": git_commit(),
        "dtype": {**dtype.as_dict(), "model_dtype": model.cfg.dtype},
        "n_train": len(splits.train),
        "n_dev": len(splits.dev),
        "n_test": len(splits.test),
    }
    evaluator, kind, payload = METHODS[cfg.method](ctx, result)
    summary = evaluate.evaluate(
        evaluator, tok, task, splits.test, kind=kind, payload=payload, progress=progress
    )
    result["test_acc"] = summary["accuracy"]
    result["prediction"] = summary
    if kind in ("prompt", "deep_prompt"):
        from cbp_jax.methods.saved_prompt import save_prompt

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
