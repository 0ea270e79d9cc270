"""RAPT privacy-utility table: accuracy and token recovery rate per noise level eta.

For each task (sst2, financial_phrasebank), seed and eta (strong to weak noise) it runs:
zero-shot and non-private white-box prompt tuning (upper bound), prompt tuning on
privatized text without reconstruction (m = 0 plain tokens), and RAPT (m plain tokens +
reconstruction head). Attacks on the privatized test text of each task, per eta: identity
and nearest-public-token inversion, and the learned (count-table) inversion fitted on
PUBLIC text: the rendered field text of `public_size` examples of the ag_news train pool
(a task not treated as private here), privatized at the same eta. Writes
`experiments/results/rapt.md` and the plot `rapt_privacy_utility.png` (accuracy vs the
learned attack's recovery rate).

    python experiments/rapt_table.py            # full table (hours on a CPU)
    python experiments/rapt_table.py --quick --results /tmp/rapt_smoke   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import shlex
import sys

import jax
import numpy as np

from cbp_jax.data.batching import make_inputs
from cbp_jax.data.splits import kshot_splits, train_pool
from cbp_jax.data.tasks import get_task
from cbp_jax.methods import zero_shot
from cbp_jax.methods.prompt_tuning import PromptTuningConfig, tune_prompt
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides
from cbp_jax.privacy import attacks, privatize_ids
from cbp_jax.privacy.inputs import encode_private
from cbp_jax.privacy.rapt import RAPTConfig, rapt_accuracy, tune_rapt

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ATTACKS = ("identity", "nearest_public", "learned")


@dataclasses.dataclass(frozen=True)
class TableConfig:
    tasks: tuple[str, ...] = ("sst2", "financial_phrasebank")
    etas: tuple[float, ...] = (10.0, 25.0, 40.0, 60.0, 100.0)
    seeds: tuple[int, ...] = (13, 42, 87)
    shots: int = 16
    test_size: int = 200
    prompt_len: int = 10
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 3e-3
    num_plain_tokens: int = 8
    head_dim: int = 64
    public_task: str = "ag_news"
    public_size: int = 500
    attack_draws: int = 2
    results: str = str(RESULTS)

    def __post_init__(self):
        if not self.tasks or not self.etas or not self.seeds:
            raise ValueError("tasks, etas and seeds must be non-empty")
        if self.public_task in self.tasks:
            raise ValueError("the public text must come from a task that is not private")
        if min(self.etas) <= 0:
            raise ValueError("etas must be positive")


QUICK = dict(etas=(40.0,), seeds=(13,), shots=2, test_size=8, prompt_len=4, epochs=2)
QUICK |= dict(public_size=20, attack_draws=1)


def attack_rates(model, cfg: TableConfig, task, test, public, eta, key) -> dict:
    k_priv, k_fit = jax.random.split(key)
    emb, special = model.params["embed"], tuple(model.tokenizer.all_special_ids)
    ids, _, private = encode_private(model.tokenizer, task, test)
    priv = np.asarray(privatize_ids(k_priv, emb, ids, private, eta, protected_ids=special))
    pub_ids, pub_private = public
    guess_v = attacks.fit_count_attack(
        k_fit, emb, pub_ids, pub_private, eta, draws=cfg.attack_draws, protected_ids=special
    )
    guesses = {
        "identity": attacks.identity_attack(priv),
        "nearest_public": attacks.nearest_public_attack(
            emb, priv, attacks.public_vocab(pub_ids, pub_private)
        ),
        "learned": attacks.count_attack(guess_v, priv),
    }
    return {a: attacks.recovery_rate(ids, g, private) for a, g in guesses.items()}


def run_seed(model, cfg: TableConfig, name: str, seed: int, public) -> dict:
    task, (params, mcfg, tok) = get_task(name), (model.params, model.cfg, model.tokenizer)
    sp = kshot_splits(name, cfg.shots, seed, test_size=cfg.test_size)
    common = dict(prompt_len=cfg.prompt_len, learning_rate=cfg.learning_rate, seed=seed)
    common |= dict(epochs=cfg.epochs, batch_size=cfg.batch_size)
    out = {"zero-shot": zero_shot.accuracy(model, task, sp.test, progress=False)}
    pt = PromptTuningConfig(**common)
    prompt, _, _ = tune_prompt(
        params, mcfg, make_inputs(tok, task, sp.train), make_inputs(tok, task, sp.dev), pt,
        progress=False,
    )  # fmt: skip
    clear = RAPTConfig(eta=float("inf"), num_plain_tokens=0, use_reconstruction=False, **common)
    out["prompt tuning (non-private)"] = rapt_accuracy(
        params, mcfg, tok, task, sp.test, prompt, clear, jax.random.key(0)
    )
    for i, eta in enumerate(cfg.etas):
        key = jax.random.fold_in(jax.random.key(seed), i)
        k_arm, k_attack = jax.random.split(key)
        arms = {
            "privatized PT": RAPTConfig(
                eta=eta, num_plain_tokens=0, use_reconstruction=False, **common
            ),
            "RAPT": RAPTConfig(
                eta=eta, num_plain_tokens=cfg.num_plain_tokens, head_dim=cfg.head_dim, **common
            ),
        }
        for arm, rc in arms.items():
            k_tune, k_test = jax.random.split(k_arm)  # same privatized text for both arms
            prompt, _, _ = tune_rapt(params, mcfg, tok, task, sp.train, sp.dev, rc, k_tune)
            out[(arm, eta)] = rapt_accuracy(params, mcfg, tok, task, sp.test, prompt, rc, k_test)
        for a, r in attack_rates(model, cfg, task, sp.test, public, eta, k_attack).items():
            out[(a, eta)] = r
        print(f"{name} seed {seed} eta {eta}: { {str(k): v for k, v in out.items()} }")
    return out


def _ms(xs) -> str:
    xs = np.asarray(xs, float)
    return f"{xs.mean():.3f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.3f}"


def plot(cfg: TableConfig, res: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in cfg.tasks:
        rows = res[name]
        leak = [np.mean([r[("learned", e)] for r in rows]) for e in cfg.etas]
        for arm, style in (("RAPT", "o-"), ("privatized PT", "s--")):
            acc = [np.mean([r[(arm, e)] for r in rows]) for e in cfg.etas]
            ax.plot(leak, acc, style, label=f"{name}: {arm}")
        ax.axhline(np.mean([r["prompt tuning (non-private)"] for r in rows]), ls=":", lw=0.8)
    ax.set_xlabel("token recovery rate, learned inversion attack (privacy leak)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write(cfg: TableConfig, res: dict, command: str, out: pathlib.Path) -> str:
    lines = [
        "# RAPT: privacy-utility (default model smollm2-135m)",
        "",
        f"Command: `{command}`",
        "",
        f"{cfg.shots} shots per class (train and dev), {cfg.test_size} test examples, seeds "
        f"{list(cfg.seeds)}; prompt length {cfg.prompt_len}, {cfg.epochs} epochs, lr "
        f"{cfg.learning_rate}; RAPT m={cfg.num_plain_tokens} plain tokens, head dim "
        f"c={cfg.head_dim}. Larger eta = less noise. Learned attack fitted on "
        f"{cfg.public_size} public {cfg.public_task} train texts x {cfg.attack_draws} draws.",
    ]
    for name in cfg.tasks:
        rows = res[name]
        lines += ["", f"## {name}: test accuracy (mean ± std over seeds)", ""]
        lines += ["| method | " + " | ".join(f"eta={e:g}" for e in cfg.etas) + " |"]
        lines += ["|---" * (len(cfg.etas) + 1) + "|"]
        for m in ("zero-shot", "prompt tuning (non-private)"):
            lines.append(
                f"| {m} | " + " | ".join([_ms([r[m] for r in rows])] * len(cfg.etas)) + " |"
            )
        for arm in ("privatized PT", "RAPT"):
            cells = [_ms([r[(arm, e)] for r in rows]) for e in cfg.etas]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines += ["", f"## {name}: token recovery rate of the private test text", ""]
        lines += ["| attack | " + " | ".join(f"eta={e:g}" for e in cfg.etas) + " |"]
        lines += ["|---" * (len(cfg.etas) + 1) + "|"]
        for a in ATTACKS:
            cells = [_ms([r[(a, e)] for r in rows]) for e in cfg.etas]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines += ["", "Plot: `rapt_privacy_utility.png` (accuracy vs learned-attack recovery)."]
    text = "\n".join(lines) + "\n"
    (out / "rapt.md").write_text(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 eta, 1 seed")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. epochs=10")
    a = p.parse_args(argv)
    cfg = apply_overrides(TableConfig(results=a.results, **(QUICK if a.quick else {})), a.set)
    model = load_model("smollm2-135m")
    pub_task = get_task(cfg.public_task)
    pool = train_pool(cfg.public_task)
    pick = np.random.default_rng(0).choice(len(pool), cfg.public_size, replace=False)
    ids, _, private = encode_private(model.tokenizer, pub_task, [pool[i] for i in pick])
    res = {n: [run_seed(model, cfg, n, s, (ids, private)) for s in cfg.seeds] for n in cfg.tasks}
    out = pathlib.Path(cfg.results)
    out.mkdir(parents=True, exist_ok=True)
    command = "python experiments/rapt_table.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    print(write(cfg, res, command, out))
    plot(cfg, res, out / "rapt_privacy_utility.png")


if __name__ == "__main__":
    main()
