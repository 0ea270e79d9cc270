"""Run one method on one task: `python -m cbp_jax.run --task sst2 --method bbt --seed 42`.

Methods: zero_shot, bbt, bbtv2 (black-box, through the service with an API budget),
prompt_tuning (white-box upper bound), and CBP-Tuning with a trained generator
(`--generator PATH`): cbp_z0 (the provider's z0, no stage 2) and cbp (stage 2: CMA-ES over
z from z0 within the budget; the result also reports z0's accuracy and saves the vector).
Data: seeded k-shot train/dev, disjoint test. Writes
`<out>/<task>/<method>[-<tag>]/seed<seed>/result.json` (plus the ES log and checkpoint; an
interrupted run resumes from them) and prints the result with its command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import shlex
import sys
import time

import jax
import numpy as np

from cbp_jax.data.splits import check_proportions, kshot_splits

METHODS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp_z0", "cbp")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    task: str = "sst2"
    method: str = "bbt"
    model: str = "smollm2-135m"
    shots: int = 16  # per class, train and dev each
    kshot: str = "balanced"  # class proportions of the k-shot sets: balanced | natural
    seed: int = 42
    test_size: int | None = 500
    budget: int = 8000
    population: int = 20
    num_dims: int = 500
    prompt_len: int = 50
    sigma0: float = 1.0
    strategy: str = "lazy_cma"
    loss: str = "ce"
    chunk: int = 5
    bbtv2_layers: str = ""  # comma-separated layer ids; empty: all layers
    pt_epochs: int = 30
    pt_lr: float = 3e-3
    generator: str = ""  # CBP: path of a saved generator (stage 1)
    cbp_sigma0: float = 0.5  # CBP: CMA-ES step size around z0
    dev_margin: int = 0  # black-box: dev examples a new ES mean must gain to be kept
    out: str = "checkpoints/runs"
    tag: str = ""  # extra run-dir level, e.g. the generator's name

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {METHODS}")
        if self.shots <= 0:
            raise ValueError("shots must be positive")
        check_proportions(self.kshot)
        if self.method.startswith("cbp") and not self.generator:
            raise ValueError(f"method {self.method} needs --generator PATH (a stage-1 generator)")

    def blackbox(self, sigma0: float):
        """The engine config of this run's black-box methods (BBT, BBTv2, CBP stage 2)."""
        from cbp_jax.methods.blackbox import BlackBoxConfig

        return BlackBoxConfig(
            strategy=self.strategy,
            population=self.population,
            sigma0=sigma0,
            budget=self.budget,
            loss=self.loss,
            chunk=self.chunk,
            dev_margin=self.dev_margin,
            seed=self.seed,
        )

    def splits(self):
        """This run's k-shot train and dev sets and test subset (a pure function of the config)."""
        return kshot_splits(
            self.task, self.shots, self.seed, test_size=self.test_size, proportions=self.kshot
        )

    @property
    def run_dir(self) -> pathlib.Path:
        """<out>/<task key>/<method>[-<tag>]/seed<seed>; the task key is a shipped task's
        name or a custom task's name plus a hash of its config (`tasks.run_key`), never a
        path, so an absolute or ../ config path stays inside `out`."""
        from cbp_jax.data.tasks import run_key

        method = f"{self.method}-{self.tag}" if self.tag else self.method
        return pathlib.Path(self.out) / run_key(self.task) / method / f"seed{self.seed}"


def run(cfg: RunConfig, progress: bool = True, model=None) -> dict:
    """Run `cfg`; `model`: an already loaded LoadedModel for cfg.model (saves a reload)."""
    from cbp_jax.data.batching import make_inputs
    from cbp_jax.data.tasks import get_task
    from cbp_jax.methods import evaluate
    from cbp_jax.methods.bbt import bbt_parameterization, run_bbtv2
    from cbp_jax.methods.blackbox import run_blackbox
    from cbp_jax.methods.prompt_tuning import PromptTuningConfig, tune_prompt
    from cbp_jax.model import load_model
    from cbp_jax.prompts.projection import ProjectionConfig
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt

    start = time.time()
    task = get_task(cfg.task)
    splits = cfg.splits()
    model = load_model(cfg.model) if model is None else model
    tok = model.tokenizer
    train, dev = make_inputs(tok, task, splits.train), make_inputs(tok, task, splits.dev)
    kinds = (NoPrompt(), SoftPrompt(), DeepPrompt())
    # The experimenter's own unlimited evaluation channel (held-out test scoring only).
    evaluator = ScoringService(model, kinds)
    result = {
        "config": dataclasses.asdict(cfg),
        "n_train": len(splits.train),
        "n_dev": len(splits.dev),
        "n_test": len(splits.test),
    }
    kind, payload = "none", None
    if cfg.method in ("bbt", "bbtv2"):
        service = ScoringService(model, kinds, budget=cfg.budget)
        bb = cfg.blackbox(cfg.sigma0)
        proj = ProjectionConfig(num_dims=cfg.num_dims, prompt_len=cfg.prompt_len)
        if cfg.method == "bbt":
            param = bbt_parameterization(jax.random.key(cfg.seed), service.public_info(), proj)
            res = run_blackbox(
                service, param, train, dev, bb, run_dir=cfg.run_dir / "es", progress=progress
            )
            kind, payload = (
                "prompt",
                np.asarray(param.payload_fn(param.payload_params, res.best_z[None])),
            )
            result.update(
                dev_acc=res.best_dev_acc,
                start_dev_acc=res.start_dev_acc,
                generations=res.generations,
                history=res.history,
            )
        else:
            layers = tuple(int(x) for x in cfg.bbtv2_layers.split(",") if x) or None
            deep, phases = run_bbtv2(
                service,
                train,
                dev,
                bb,
                proj,
                layers=layers,
                run_dir=cfg.run_dir / "es",
                progress=progress,
            )
            kind, payload = "deep_prompt", deep[:, None]
            result.update(
                dev_acc=phases[-1].best_dev_acc,
                generations=sum(p.generations for p in phases),
                layers_tuned=[p.layer for p in phases],
                history=[h for p in phases for h in p.history],
            )
        result["calls"] = service.calls_used
    elif cfg.method == "prompt_tuning":
        pt = PromptTuningConfig(
            prompt_len=cfg.prompt_len, epochs=cfg.pt_epochs, learning_rate=cfg.pt_lr, seed=cfg.seed
        )
        prompt, dev_acc, history = tune_prompt(
            model.params, model.cfg, train, dev, pt, progress=progress
        )
        kind, payload = "prompt", prompt[None]
        result.update(dev_acc=dev_acc, history=history)
    elif cfg.method in ("cbp_z0", "cbp"):
        evaluator, kind, payload = _run_cbp(cfg, model, task, splits, train, dev, result, progress)
    result["test_acc"] = evaluate.accuracy(
        evaluator, tok, task, splits.test, kind=kind, payload=payload, progress=progress
    )
    result["seconds"] = time.time() - start
    result["device"] = jax.devices()[0].device_kind
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _run_cbp(cfg: RunConfig, model, task, splits, train, dev, result: dict, progress: bool):
    """CBP: -> (provider-side evaluator service, kind, payload); fills `result`."""
    from cbp_jax.methods import evaluate
    from cbp_jax.methods.cbp import cbp_service, customize, load_generator, save_task_vector

    artifact = load_generator(cfg.generator, expected_model=model)
    release = artifact.release()  # all the user gets: r, z0, ids
    evaluator = cbp_service(model, artifact)
    result["generator"] = {"path": cfg.generator, "id": release.generator_id, **artifact.info}
    z = release.z0_R
    if cfg.method == "cbp":
        result["test_acc_z0"] = evaluate.accuracy(
            evaluator, model.tokenizer, task, splits.test, kind="task_vector", payload=z[None]
        )
        service = cbp_service(model, artifact, budget=cfg.budget)
        bb = cfg.blackbox(cfg.cbp_sigma0)
        res = customize(
            service, release, train, dev, bb, run_dir=cfg.run_dir / "es", progress=progress
        )
        z = np.asarray(res.best_z, np.float32)
        save_task_vector(cfg.run_dir / "task_vector", z, task=cfg.task, release=release)
        result.update(
            dev_acc=res.best_dev_acc,
            start_dev_acc=res.start_dev_acc,
            generations=res.generations,
            history=res.history,
            calls=service.calls_used,
        )
    return evaluator, "task_vector", z[None]


def parser() -> argparse.ArgumentParser:
    from cbp_jax.run_help import HELP

    p = argparse.ArgumentParser(
        prog="python -m cbp_jax.run",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(RunConfig):
        typ = {"int": int, "float": float, "str": str}.get(str(f.type).split(" ")[0], str)
        name = "--" + f.name.replace("_", "-")
        p.add_argument(name, type=typ, default=f.default, help=HELP.get(f.name, " "))
    return p


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    cfg = RunConfig(**vars(args))
    result = run(cfg)
    print(f"command: python -m cbp_jax.run {shlex.join(sys.argv[1:] if argv is None else argv)}")
    from cbp_jax.data.tasks import get_task
    from cbp_jax.run_report import result_lines

    labels = [ex["label"] for ex in cfg.splits().test]
    print("\n".join(result_lines(cfg, result, get_task(cfg.task), labels)))
    return result


if __name__ == "__main__":
    main()
