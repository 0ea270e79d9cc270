"""How much of the private text d_chi privatization leaves unchanged, per eta: where to sample.

What: the fraction of private-field tokens that the d_chi mechanism (`privacy.dchi`) maps
back to themselves (the identity attack's recovery rate), on the first N train examples of
each task, for a list of etas. This is the cheapest privacy reading there is (no training,
one privatization per eta) and says which etas lie on the steep part of the curve: a table
sampled only where everything survives or where utility is already at chance brackets the
privacy-utility curve without measuring it.

Run: `.venv/bin/python experiments/dchi_survival.py [--tasks sst2,financial_phrasebank]
[--etas 40,50,60,70,80,100] [--n 100]` (about a minute on one core). Writes
experiments/results/dchi_survival.json and prints one line per (task, eta).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

from cbp_jax.data.splits import train_pool
from cbp_jax.data.tasks import get_task
from cbp_jax.model import load_model
from cbp_jax.privacy import attack_suite as attacks
from cbp_jax.privacy.dchi import privatize_ids
from cbp_jax.privacy.inputs import encode_private

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def survival(model, task_name: str, etas, n: int, seed: int) -> dict[str, float]:
    """Fraction of private tokens left unchanged at each eta (one draw, key `seed`)."""
    examples = list(train_pool(task_name))[:n]
    if not examples:
        raise ValueError(f"{task_name} has no train examples")
    ids, _, private = encode_private(model.tokenizer, get_task(task_name), examples)
    special = tuple(model.tokenizer.all_special_ids)
    out = {}
    for eta in etas:
        priv = privatize_ids(
            jax.random.key(seed), model.params["embed"], ids, private, eta, protected_ids=special
        )
        guess = attacks.identity_attack(np.asarray(priv))
        out[f"{eta:g}"] = float(attacks.recovery_rate(ids, guess, private))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default="sst2,financial_phrasebank")
    p.add_argument("--etas", default="40,50,60,70,80,100")
    p.add_argument("--n", type=int, default=100, help="train examples per task")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    etas = [float(e) for e in a.etas.split(",")]
    if a.n < 1 or not etas or min(etas) <= 0:
        raise SystemExit("--n must be >= 1 and every eta > 0")
    model = load_model(a.model)
    rates = {}
    for name in a.tasks.split(","):
        rates[name] = survival(model, name, etas, a.n, a.seed)
        for eta, r in rates[name].items():
            print(f"{name} eta={eta}: {r:.3f} of private tokens unchanged", flush=True)
    out = {"model": a.model, "n": a.n, "seed": a.seed, "unchanged_fraction": rates}
    (RESULTS / "dchi_survival.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
