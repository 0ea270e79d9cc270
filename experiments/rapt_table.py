"""RAPT privacy-utility table: PEFT accuracy and attack success per noise level eta.

Per task, seed and eta: prompt tuning, prefix tuning and LoRA on privatized text, each
without and with the reconstruction task (head over the vocabulary at the input's own
positions), and the earlier placement (plain tokens before the text) as an ablation row;
zero-shot and non-private prompt tuning as references. Attacks on the private test text per
eta, all fitted on PUBLIC text (ag_news train pool) privatized at the same eta: token
inversion (identity, nearest public token, learned count table), embedding inversion of the
service's hidden states, and attribute inference (does the original text contain a digit?).

Every run (zero-shot, one arm at one eta, the attacks at one eta; per task and seed) is a
cell of the experiment layer: a record in the committed experiments/results/rapt_runs.jsonl
keyed by the hash of its whole config (a changed config is refused, naming the field), and
a rerun skips finished runs. rapt.md is written from the records only (`--table-only`: run
nothing). The earlier table's numbers are legacy records there (no API-call budget).

    python experiments/rapt_table.py --set tasks=sst2 seeds=13 etas=40,100 epochs=5
    python experiments/rapt_table.py --quick --results /tmp/rapt_smoke   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import pathlib
import shlex
import sys

import jax
import numpy as np

from cbp_jax.data.splits import kshot_splits, train_pool
from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.tables import LegacyTable, get_or_run, import_legacy, write_table
from cbp_jax.methods import zero_shot
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides
from cbp_jax.privacy import attacks, privatize_ids, rep_attacks
from cbp_jax.privacy.inputs import encode_private
from cbp_jax.privacy.rapt import RAPTConfig, rapt_accuracy, tune_rapt

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parents[1]
LEGACY = LegacyTable("rapt", None)  # white-box tuning and attacks: no API-call budget
PEFTS = ("prompt", "prefix", "lora")
ARMS = tuple(f"{p}{r}" for p in PEFTS for r in ("", "+rec")) + ("prompt+rec (plain before)",)
ATTACKS = ("identity", "nearest_public", "learned", "representation inversion")


@dataclasses.dataclass(frozen=True)
class TableConfig:
    tasks: tuple[str, ...] = ("sst2", "financial_phrasebank")
    etas: tuple[float, ...] = (10.0, 25.0, 40.0, 60.0, 100.0)
    seeds: tuple[int, ...] = (13, 42, 87)
    shots: int = 16
    test_size: int = 200
    prompt_len: int = 10
    lora_rank: int = 4
    epochs: int = 30
    batch_size: int = 8
    learning_rate: float = 3e-3
    num_plain_tokens: int = 8  # the plain_before ablation
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


QUICK = dict(tasks=("sst2",), etas=(40.0,), seeds=(13,), shots=2, test_size=8, prompt_len=4)
QUICK |= dict(epochs=2, public_size=20, attack_draws=1)


def arm_config(cfg: TableConfig, arm: str, eta: float, seed: int) -> RAPTConfig:
    common = dict(prompt_len=cfg.prompt_len, learning_rate=cfg.learning_rate, seed=seed)
    common |= dict(epochs=cfg.epochs, batch_size=cfg.batch_size, head_dim=cfg.head_dim)
    common |= dict(lora_rank=cfg.lora_rank, lora_alpha=2.0 * cfg.lora_rank, eta=eta)
    if arm == "prompt+rec (plain before)":
        return RAPTConfig(peft="prompt", placement="plain_before", head_vocab="plain",
                          num_plain_tokens=cfg.num_plain_tokens, **common)  # fmt: skip
    return RAPTConfig(
        peft=arm.removesuffix("+rec"), use_reconstruction=arm.endswith("+rec"), **common
    )


class Store:
    """The table's run records (experiment layer); `get` runs a missing cell unless dry."""

    def __init__(self, path: pathlib.Path, dry_run: bool = False):
        self.records, self.dry_run = RecordStore(path), dry_run

    def get(self, name: str, payload: dict, compute):
        return get_or_run(self.records, Cell(name, payload), compute, dry_run=self.dry_run)


def attack_rates(model, cfg, task, test, public, eta, key) -> dict:
    """Every attack's success on the test text at this eta (fitted on public text)."""
    k_priv, k_fit, k_pub = jax.random.split(key, 3)
    params, mcfg, tok = model.params, model.cfg, model.tokenizer
    emb, special = params["embed"], tuple(tok.all_special_ids)
    ids, mask, private = encode_private(tok, task, test)
    priv = np.asarray(privatize_ids(k_priv, emb, ids, private, eta, protected_ids=special))
    pub_ids, pub_mask, pub_private, pub_texts = public
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
    pub_priv = np.asarray(
        privatize_ids(k_pub, emb, pub_ids, pub_private, eta, protected_ids=special)
    )
    h_pub = rep_attacks.service_hidden(params, mcfg, pub_priv, pub_mask)
    h_test = rep_attacks.service_hidden(params, mcfg, priv, mask)
    inv = rep_attacks.fit_inversion(h_pub, pub_ids, pub_private)
    guesses["representation inversion"] = rep_attacks.invert(inv, h_test)
    out = {a: attacks.recovery_rate(ids, g, private) for a, g in guesses.items()}
    model_attr = rep_attacks.fit_attribute(
        rep_attacks.pooled(h_pub, pub_private), rep_attacks.has_digit(pub_texts)
    )
    test_attr = rep_attacks.has_digit([" ".join(str(ex[f]) for f in task.fields) for ex in test])
    feats = rep_attacks.pooled(h_test, private)
    ok = 0 < test_attr.sum() < len(test_attr)
    out["attribute AUC"] = rep_attacks.attribute_auc(model_attr, feats, test_attr) if ok else None
    return out


def run_seed(model, cfg: TableConfig, store: Store, name: str, seed: int, public) -> dict:
    task = get_task(name)
    splits = functools.cache(lambda: kshot_splits(name, cfg.shots, seed, test_size=cfg.test_size))
    base = {"task": name, "seed": seed, "shots": cfg.shots, "test_size": cfg.test_size}
    at = f"{name}/seed{seed}"
    zs = store.get(
        f"{at}/zero-shot",
        {**base, "arm": "zero-shot"},
        lambda: zero_shot.accuracy(model, task, splits().test, progress=False),
    )
    out = {"zero-shot": zs}

    def tuned(rc: RAPTConfig, k_tune, k_test):
        params, mcfg, tok, sp = model.params, model.cfg, model.tokenizer, splits()
        peft, _, _ = tune_rapt(params, mcfg, tok, task, sp.train, sp.dev, rc, k_tune)
        return rapt_accuracy(params, mcfg, tok, task, sp.test, peft, rc, k_test)

    clear = arm_config(cfg, "prompt", float("inf"), seed)
    keys = jax.random.split(jax.random.key(seed), 2)
    out["prompt tuning (non-private)"] = store.get(
        f"{at}/non-private",
        {**base, "arm": "non-private", "rc": dataclasses.asdict(clear)},
        lambda: tuned(clear, *keys),
    )
    for i, eta in enumerate(cfg.etas):
        k_arm, k_attack = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
        k_tune, k_test = jax.random.split(k_arm)  # the same privatized text for every arm
        for arm in ARMS:
            rc = arm_config(cfg, arm, eta, seed)
            out[(arm, eta)] = store.get(
                f"{at}/eta{eta:g}/{arm}",
                {**base, "arm": arm, "rc": dataclasses.asdict(rc)},
                lambda rc=rc, kt=(k_tune, k_test): tuned(rc, *kt),
            )
        payload = {**base, "arm": "attacks", "eta": eta, "public": cfg.public_size,
                   "draws": cfg.attack_draws, "public_task": cfg.public_task}  # fmt: skip
        rates = store.get(
            f"{at}/eta{eta:g}/attacks",
            payload,
            lambda e=eta, k=k_attack: attack_rates(model, cfg, task, splits().test, public, e, k),
        )
        out |= {(a, eta): (rates or {}).get(a) for a in (*ATTACKS, "attribute AUC")}
        print(f"{name} seed {seed} eta {eta}: { {str(k): v for k, v in out.items()} }", flush=True)
    return out


def _ms(xs) -> str:
    xs = np.asarray([x for x in xs if x is not None], float)
    if not len(xs):
        return "n/a"
    return f"{xs.mean():.3f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.3f}"


def write(cfg: TableConfig, res: dict, command: str) -> str:
    etas = " | ".join(f"eta={e:g}" for e in cfg.etas)
    lines = [
        "# RAPT: privacy-utility of prompt tuning, prefix tuning and LoRA (smollm2-135m)",
        "",
        f"Command: `{command}`",
        "",
        "Cells marked n/a have not run yet: the command above runs them (each finished "
        "cell is a record, so it resumes where it stopped). This section "
        "supersedes the status note inside the legacy block below.",
        "",
        f"{cfg.shots} shots per class (train and dev), {cfg.test_size} test examples, seeds "
        f"{list(cfg.seeds)}; prompt / prefix length {cfg.prompt_len}, LoRA rank "
        f"{cfg.lora_rank} (alpha {2 * cfg.lora_rank}), {cfg.epochs} epochs, Adam lr "
        f"{cfg.learning_rate}. '+rec': reconstruction head (c={cfg.head_dim}, over the "
        f"vocabulary) predicting the original token at each private input position; 'plain "
        f"before': the earlier placement, {cfg.num_plain_tokens} plain tokens before the "
        f"text. Larger eta = less noise. Attacks fitted on {cfg.public_size} public "
        f"{cfg.public_task} texts privatized at the same eta. Runs: `rapt_runs.jsonl`.",
    ]
    for name in cfg.tasks:
        rows = res[name]
        lines += ["", f"## {name}: test accuracy (mean ± std over seeds)", ""]
        lines += [f"| method | {etas} |", "|---" * (len(cfg.etas) + 1) + "|"]
        for m in ("zero-shot", "prompt tuning (non-private)"):
            cells = [_ms([r[m] for r in rows])] * len(cfg.etas)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        for arm in ARMS:
            cells = [_ms([r[(arm, e)] for r in rows]) for e in cfg.etas]
            label = arm.replace("prefix", "Prefix tuning").replace("lora", "LoRA")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", f"## {name}: attacks on the private test text", ""]
        lines += ["Token recovery rate (inversion attacks) and Attribute inference AUC "
                  "(does the text contain a digit; 0.5 = nothing learned).", ""]  # fmt: skip
        lines += [f"| attack | {etas} |", "|---" * (len(cfg.etas) + 1) + "|"]
        for a in (*ATTACKS, "attribute AUC"):
            cells = [_ms([r[(a, e)] for r in rows]) for e in cfg.etas]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 eta, 1 seed")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. epochs=10")
    p.add_argument("--table-only", action="store_true", help="run nothing; table from records")
    a = p.parse_args(argv)
    cfg = apply_overrides(TableConfig(results=a.results, **(QUICK if a.quick else {})), a.set)
    out = pathlib.Path(cfg.results)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "rapt_runs.jsonl", dry_run=a.table_only)
    if out.resolve() == RESULTS.resolve():  # the committed table: its legacy numbers too
        import_legacy(store.records, LEGACY, RESULTS, ROOT)
    model = public = None
    if not a.table_only:
        model = load_model("smollm2-135m")
        pub_task = get_task(cfg.public_task)
        pool = train_pool(cfg.public_task)
        pick = np.random.default_rng(0).choice(len(pool), cfg.public_size, replace=False)
        examples = [pool[i] for i in pick]
        ids, mask, private = encode_private(model.tokenizer, pub_task, examples)
        texts = [" ".join(str(ex[f]) for f in pub_task.fields) for ex in examples]
        public = (ids, mask, private, texts)
    res = {n: [run_seed(model, cfg, store, n, s, public) for s in cfg.seeds] for n in cfg.tasks}
    ran = any(not r.get("legacy") for r in store.records.records.values())
    args = [x for x in (sys.argv[1:] if argv is None else argv) if x != "--table-only"]
    command = ("python experiments/rapt_table.py " + shlex.join(args)).strip()
    print(
        write_table(store.records, "rapt", out, write(cfg, res, command) if ran else "").read_text()
    )


if __name__ == "__main__":
    main()
