"""Where a CBP run's answers go: class counts of z0 and of the tuned vector on dev and test.

    python experiments/cbp_predictions.py \
        checkpoints/cbp_budget/runs/financial_phrasebank/cbp-financial/seed0

Reads the run's result.json (its RunConfig: task, seed, shots, k-shot protocol, generator)
and its saved task_vector, rebuilds the same k-shot dev set and test subset, and prints,
for z0 and for the tuned vector, the accuracy and the predicted-class counts next to the
true ones. It shows whether stage 2 changed how the model answers (e.g. its class prior) or
what it knows.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

from cbp_jax.data.tasks import get_task
from cbp_jax.methods.cbp import load_task_vector, task_vector_predict
from cbp_jax.model import load_model
from cbp_jax.prompts.artifact import load_generator
from cbp_jax.run import RunConfig
from cbp_jax.service.provider import cbp_service


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("run_dir", help="a CBP run folder (with result.json and task_vector)")
    args = parser.parse_args(argv)
    run_dir = pathlib.Path(args.run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    cfg = result["config"]
    if cfg["method"] != "cbp":
        raise ValueError(f"{run_dir} is a {cfg['method']} run, not cbp")
    model = load_model(cfg["model"])
    artifact = load_generator(cfg["generator"], expected_model=model)
    release = artifact.release()
    tuned = load_task_vector(run_dir / "task_vector", release=release, task=cfg["task"])
    service = cbp_service(model, artifact)
    task = get_task(cfg["task"])
    splits = RunConfig(**cfg).splits()  # the run's own protocol (balanced if it predates kshot)
    k = task.num_classes
    print(f"{cfg['task']} seed {cfg['seed']}: class counts as [{', '.join(map(str, range(k)))}]")
    for split in ("dev", "test"):
        examples = getattr(splits, split)
        truth = np.array([ex["label"] for ex in examples])
        print(f"  {split:4s} truth      {np.bincount(truth, minlength=k).tolist()}")
        for name, z in (("z0", release.z0_R), ("tuned", tuned.z_R)):
            pred = np.asarray(
                task_vector_predict(service, model.tokenizer, task, examples, z, release.task_dims)
            )
            acc = float((pred == truth).mean())
            counts = np.bincount(pred, minlength=k).tolist()
            print(f"  {split:4s} {name:6s} acc {100 * acc:5.1f}  predicted {counts}")


if __name__ == "__main__":
    main()
