"""Study `rapt`: RAPT's privacy-utility table, PEFT accuracy and attack success per eta.

    cbp-jax study rapt run --set tasks=sst2 seeds=13 etas=40,100 epochs=5
    cbp-jax study rapt run --quick --results /tmp/rapt_smoke   # smoke run
    cbp-jax study rapt table [--set ...]     # run nothing (default: table.md's own run)

Per task, seed and eta: prompt tuning, prefix tuning and LoRA on privatized text, each
without reconstruction and with RAPT's (a head over the vocabulary recovering m PUBLIC plain
tokens privatized with the input and placed after it: the fixed plain-token sequence, or
fresh random plain tokens per example); the plain tokens before the text as an ablation row;
the non-private oracle head (predicts the user's original tokens, outside the threat model:
an upper bound, not RAPT; its cells keep the "+rec" names they were recorded under); zero-shot
and non-private prompt tuning as references; every attack of `privacy.attack_suite` per eta,
all fitted on PUBLIC text (ag_news) privatized at the same eta. Each run is a cell of the
experiment layer (`tables.get_or_run`): a record in runs.jsonl beside this file keyed by the
hash of its whole config (a changed config is refused, naming the field); a rerun skips
finished runs. The arms of one eta share the privatized text (the same keys). table.md is
written from the records only; the earlier table's numbers are legacy records there (stem
`rapt`). experiments/results/rapt.md links to table.md (acceptance scripts read it there).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax

from cbp_jax.cli_study import committed_run
from cbp_jax.data.splits import kshot_splits
from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.experiment.runner import zero_shot
from cbp_jax.experiment.tables import get_or_run, write_table
from cbp_jax.model import load_model
from cbp_jax.overrides import apply_overrides
from cbp_jax.privacy.attack_suite import TOKEN_ATTACKS, attack_rates, public_text
from cbp_jax.privacy.peft import ORACLE
from cbp_jax.privacy.rapt import RAPTConfig, rapt_evaluate, tune_rapt
from studies.common import command, parser

QUESTION = "Does RAPT's plain-token reconstruction keep utility under local-DP text noise?"
ANSWER = (
    "Not measured yet: RAPT's plain-token arms have not run; at eta 40 tuning is near chance, at "
    "eta 100 the identity attack recovers every token; the non-private oracle helps at neither"
)
COMMANDS = ("run", "table")
RESULTS = pathlib.Path(__file__).resolve().parent
# the names the legacy table's text gives its files (before the one layout of studies/README.md)
RENAMED = {"rapt.md": "table.md", "rapt_runs.jsonl": "runs.jsonl", "rapt_reading.md": "reading.md",
           "rapt_privacy_utility.png": "privacy_utility.png"}  # fmt: skip

PEFTS = ("prompt", "prefix", "lora")
PLAIN = ("fixed", "random")
RECS = ("", *(f"+rec ({c} plain)" for c in PLAIN), "+rec")  # "+rec": the ORACLE's records
ARMS = tuple(f"{p}{r}" for p in PEFTS for r in RECS) + ("prompt+rec (plain before)",)
ORACLE_LABEL = " + non-private oracle (upper bound)"
# RAPTConfig fields added after records of this table ran, at the value those runs had:
# left out of a cell's config at that value, so the records keep matching their cells
ADDED_FIELDS = {"plain_tokens": "fixed"}


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """The table: tasks x etas x seeds, the k-shot sets, the PEFT and attack settings."""

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
    num_plain_tokens: int = 8  # m, for every plain-token arm
    head_dim: int = 64
    public_task: str = "ag_news"
    public_size: int = 500
    attack_draws: int = 2

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
    """One arm's RAPT config (eta = inf: no privatization). Arms without reconstruction and
    the oracle arms pin placement and m to the values their records ran with (unused
    without reconstruction)."""
    common = dict(prompt_len=cfg.prompt_len, learning_rate=cfg.learning_rate, seed=seed)
    common |= dict(epochs=cfg.epochs, batch_size=cfg.batch_size, head_dim=cfg.head_dim)
    common |= dict(lora_rank=cfg.lora_rank, lora_alpha=2.0 * cfg.lora_rank, eta=eta)
    m = cfg.num_plain_tokens
    if arm == "prompt+rec (plain before)":
        return RAPTConfig(peft="prompt", placement="plain_before", head_vocab="plain",
                          num_plain_tokens=m, **common)  # fmt: skip
    if arm.endswith(" plain)"):
        peft, choice = arm.removesuffix(" plain)").split("+rec (")
        return RAPTConfig(peft=peft, placement="plain_after", plain_tokens=choice,
                          num_plain_tokens=m, **common)  # fmt: skip
    return RAPTConfig(
        peft=arm.removesuffix("+rec"), use_reconstruction=arm.endswith("+rec"),
        placement=ORACLE, num_plain_tokens=0, **common,
    )  # fmt: skip


def rc_payload(rc: RAPTConfig) -> dict:
    """A cell's RAPT config: every field, less those of ADDED_FIELDS at their recorded value."""
    d = dataclasses.asdict(rc)
    return {k: v for k, v in d.items() if k not in ADDED_FIELDS or v != ADDED_FIELDS[k]}


def arm_label(arm: str) -> str:
    """An arm's row label: the oracle named as such, Prefix tuning and LoRA spelled out."""
    label = arm.removesuffix("+rec") + ORACLE_LABEL if arm.endswith("+rec") else arm
    return label.replace("prefix", "Prefix tuning").replace("lora", "LoRA")


def run_seed(model, cfg: TableConfig, get, name: str, seed: int, public) -> dict:
    """Every run of task `name` at `seed`: {row or (row, eta): value} (None: not run). A
    utility value is a `prediction_summary` dict (records from before it: the accuracy as a
    float); an attack's, a rate. public: the adversary's `PublicText` (None: nothing runs)."""
    task = get_task(name)
    splits = functools.cache(lambda: kshot_splits(name, cfg.shots, seed, test_size=cfg.test_size))
    base = {"task": name, "seed": seed, "shots": cfg.shots, "test_size": cfg.test_size}
    at = f"{name}/seed{seed}"
    zs = get(
        f"{at}/zero-shot",
        {**base, "arm": "zero-shot"},
        lambda: zero_shot(model, task, splits().test, progress=False),
    )
    out = {"zero-shot": zs}

    def tuned(rc: RAPTConfig, k_tune, k_test):
        params, mcfg, tok, sp = model.params, model.cfg, model.tokenizer, splits()
        peft, _, _ = tune_rapt(params, mcfg, tok, task, sp.train, sp.dev, rc, k_tune)
        return rapt_evaluate(params, mcfg, tok, task, sp.test, peft, rc, k_test)

    clear = arm_config(cfg, "prompt", float("inf"), seed)
    keys = jax.random.split(jax.random.key(seed), 2)
    out["prompt tuning (non-private)"] = get(
        f"{at}/non-private",
        {**base, "arm": "non-private", "rc": rc_payload(clear)},
        lambda: tuned(clear, *keys),
    )
    for i, eta in enumerate(cfg.etas):
        k_arm, k_attack = jax.random.split(jax.random.fold_in(jax.random.key(seed), i))
        k_tune, k_test = jax.random.split(k_arm)  # the same privatized text for every arm
        for arm in ARMS:
            rc = arm_config(cfg, arm, eta, seed)
            out[(arm, eta)] = get(
                f"{at}/eta{eta:g}/{arm}",
                {**base, "arm": arm, "rc": rc_payload(rc)},
                lambda rc=rc, kt=(k_tune, k_test): tuned(rc, *kt),
            )
        payload = {**base, "arm": "attacks", "eta": eta, "public": cfg.public_size,
                   "draws": cfg.attack_draws, "public_task": cfg.public_task}  # fmt: skip
        rates = get(
            f"{at}/eta{eta:g}/attacks",
            payload,
            lambda e=eta, k=k_attack: attack_rates(
                model, task, splits().test, public, e, k, cfg.attack_draws
            ),
        )
        out |= {(a, eta): (rates or {}).get(a) for a in (*TOKEN_ATTACKS, "attribute AUC")}
        if model is not None:  # a run, not a table from the records
            print(f"{name} seed {seed} eta {eta}: { {str(k): v for k, v in out.items()} }")
    return out


def main(argv=None) -> None:
    from studies.rapt.report import report  # it reads this module's names

    p = parser(__doc__.splitlines()[0], COMMANDS, RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 1 eta, 1 seed")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. epochs=10")
    a = p.parse_args(argv)
    if a.command == "table" and not (a.quick or a.set):  # the committed table's own run
        a = p.parse_args(
            ["table", *committed_run(RESULTS / "table.md", "rapt"), "--results", a.results]
        )
    cfg = apply_overrides(TableConfig(**(QUICK if a.quick else {})), a.set)
    out = pathlib.Path(a.results)
    out.mkdir(parents=True, exist_ok=True)
    store = RecordStore(out / "runs.jsonl")

    def get(name, payload, compute):
        return get_or_run(store, Cell(name, payload), compute, dry_run=a.command == "table")

    model = public = None
    if a.command == "run":
        model = load_model("smollm2-135m")
        public = public_text(model.tokenizer, cfg.public_task, cfg.public_size)
    run = functools.partial(run_seed, model, cfg, get)
    res = {n: [run(n, s, public) for s in cfg.seeds] for n in cfg.tasks}
    ran = any(not r.get("legacy") for r in store.records.values())
    args = ["--quick"] * a.quick + (["--set", *a.set] if a.set else [])
    section = report(cfg, res, command("rapt", args)) if ran else ""
    print(f"wrote {write_table(store, 'rapt', out, section, filename='table.md', renames=RENAMED)}")
