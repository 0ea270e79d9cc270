"""The paper-budget tables: BBT, BBTv2 and CBP at 8000 calls (400 generations at P = 20).

One table per task (sst2, financial_phrasebank), in two protocols:

- *as first run* (columns without a prefix; records up to 2026-12-06): CSA CMA-ES
  (`LEGACY_STRATEGY`) and BBT's p0 taken as the served model's own ids 1000-1049 (code
  fragments in SmolLM2's vocabulary). Its black-box columns (`SUPERSEDED`) keep their records
  as labelled ablation rows and are not run further.
- *as published* (columns `published/...`, planned 2026-12-07 after an audit against BBT's
  code): pycma's CMA-ES (TPA step size at d = 500, `cbp_jax.es.DEFAULT_STRATEGY`), p0 the
  words RoBERTa's ids 1000-1049 decode to, CBP with the task held out of stage 1 (sst2: a
  generator without sst2; financial_phrasebank: the sentiment generator, which never saw it),
  BBTv2, and on financial_phrasebank the k-shot sets in the task's own class proportions
  (`kshot=natural`) beside balanced ones.

Columns that run no CMA-ES (zero-shot, prompt tuning, CBP z0) are shared by both protocols.
Calls are the papers' unit (one candidate on the whole k-shot batch). Cells are planned
cheapest and most decisive first (zero-shot and z0; then held-out CBP seed by seed, BBT,
BBTv2, the natural-proportion columns, in-domain CBP), so a sweep cut short fills whole rows.
The report reads the committed records only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

from cbp_jax.es import DEFAULT_STRATEGY
from cbp_jax.experiment.records import Cell
from cbp_jax.model.registry import DEFAULT_MODEL
from cbp_jax.run import LEGACY_STRATEGY, RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_FINANCIAL = "checkpoints/shipped/financial-generator"
PUBLISHED = "published/"  # column prefix of the protocol as the papers' code runs it
COLUMNS = (
    "zero_shot",
    "bbt",
    "prompt_tuning",
    "cbp_z0",
    "cbp",
    "published/cbp_z0_held_out",
    "published/cbp_held_out",
    "published/bbt",
    "published/bbtv2",
    "published/cbp",
    "published/cbp_z0_natural",
    "published/cbp_natural",
    "published/bbt_natural",
    "published/prompt_tuning_natural",
)
SUPERSEDED = ("bbt", "cbp")  # first-protocol CMA-ES columns: records kept, not run further
NATURAL_TASKS = ("financial_phrasebank",)  # the natural-proportion columns' task


# how each column is named in tables and plots
LABELS = {
    "zero_shot": "zero-shot",
    "bbt": "BBT, first protocol (CSA CMA-ES, p0 = own ids 1000-1049)",
    "prompt_tuning": "prompt tuning (white-box)",
    "cbp_z0": "CBP z0 (no stage 2)",
    "cbp": "CBP (domain generator), first protocol (CSA CMA-ES)",
    "published/cbp_z0_held_out": "CBP z0, task held out of stage 1",
    "published/cbp_held_out": "CBP, task held out of stage 1",
    "published/bbt": "BBT (pycma CMA-ES, p0 = words)",
    "published/bbtv2": "BBTv2 (pycma CMA-ES, p0 = words)",
    "published/cbp": "CBP (domain generator, pycma CMA-ES)",
    "published/cbp_z0_natural": "CBP z0, natural k-shot proportions",
    "published/cbp_natural": "CBP, natural k-shot proportions",
    "published/bbt_natural": "BBT, natural k-shot proportions",
    "published/prompt_tuning_natural": "prompt tuning (white-box), natural k-shot proportions",
}


# (a, b, what a - b asks), in the order the report lists them; each is shown where the task
# has both columns. The first block is the papers' protocol, the last the first one's.
COMPARISONS = (
    ("published/cbp_held_out", "published/bbt", "CBP held out - BBT (the papers' claim)"),
    ("published/cbp_held_out", "published/cbp_z0_held_out",
     "CBP held out - its z0 (does stage 2 improve on the held-out start?)"),
    ("published/bbt", "zero_shot", "BBT - zero-shot (does BBT move off zero-shot?)"),
    ("published/bbt", "bbt", "BBT - BBT first protocol (pycma search, p0 as words)"),
    ("published/bbtv2", "published/bbt", "BBTv2 - BBT"),
    ("published/cbp", "cbp_z0", "CBP - CBP z0 (pycma CMA-ES)"),
    ("published/cbp", "published/bbt", "CBP (domain generator) - BBT"),
    ("published/cbp_natural", "published/cbp_z0_natural",
     "natural proportions: CBP - its z0"),
    ("published/cbp_natural", "published/bbt_natural", "natural proportions: CBP - BBT"),
    ("published/cbp_natural", "published/prompt_tuning_natural",
     "natural proportions: CBP - prompt tuning"),
    ("cbp", "cbp_z0", "first protocol: CBP - CBP z0"),
    ("cbp", "bbt", "first protocol: CBP - BBT"),
)  # fmt: skip


def column_parts(column: str) -> tuple[str, bool, bool, bool]:
    """(method, published, held_out, natural) of a column name."""
    published = column.startswith(PUBLISHED)
    base = column.removeprefix(PUBLISHED)
    natural = base.endswith("_natural")
    base = base.removesuffix("_natural")
    held = base.endswith("_held_out")
    return base.removesuffix("_held_out"), published, held, natural


@dataclasses.dataclass(frozen=True)
class PaperBudgetConfig:
    """The protocol. shots: per class, train and dev each (sst2 16 as in BBT; financial 8, the
    CBP tables' k-shot sets); budget/population: the papers' 8000 calls at P = 20."""

    tasks: tuple[str, ...] = ("financial_phrasebank", "sst2")
    shots: tuple[tuple[str, int], ...] = (("financial_phrasebank", 8), ("sst2", 16))
    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 8000
    population: int = 20
    test_size: int = 200
    pt_epochs: int = 30
    stage1_steps: int = 150
    out: str = "checkpoints/paper_budget"
    model: str = DEFAULT_MODEL
    only_columns: tuple[str, ...] = ()  # () = every column; e.g. ("zero_shot", "bbt")

    def __post_init__(self):
        if min(self.budget, self.population, self.test_size, len(self.seeds)) <= 0:
            raise ValueError("budget, population, test_size and seeds must be positive")
        if set(self.tasks) - {"financial_phrasebank", "sst2"}:
            raise ValueError(f"paper-budget tasks are sst2 and financial_phrasebank: {self.tasks}")
        if unknown := set(self.only_columns) - set(COLUMNS):
            raise ValueError(f"unknown columns {sorted(unknown)}; known: {list(COLUMNS)}")

    @property
    def name(self) -> str:
        """The table's name: paper_budget for the default model, else with the model."""
        return "paper_budget" + self.suffix

    @property
    def suffix(self) -> str:
        """Of the study's files: table.md, runs.jsonl for the default model, else
        table_<model>.md, runs_<model>.jsonl."""
        return "" if self.is_default_model else f"_{self.model}"

    @property
    def records_file(self) -> str:
        return f"runs{self.suffix}.jsonl"

    @property
    def table_file(self) -> str:
        return f"table{self.suffix}.md"

    @property
    def is_default_model(self) -> bool:
        return self.model == DEFAULT_MODEL

    def generators(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Generators trained on first need: name -> (domain, excluded tasks). The default
        model's financial generator is shipped; another model needs its own (its embeddings)."""
        gens = {"sentiment": ("sentiment", ()), "sentiment-minus-sst2": ("sentiment", ("sst2",))}
        return gens if self.is_default_model else {"financial": ("financial", ()), **gens}

    def generator_name(self, task: str, held_out: bool) -> str | None:
        """The generator a CBP cell of `task` uses (None: the shipped financial one). Held out:
        sst2 -> trained on the sentiment domain without sst2; financial_phrasebank -> the
        sentiment generator (sst2 and ag_news; it never saw financial_phrasebank)."""
        if task == "financial_phrasebank":
            if held_out:
                return "sentiment"
            return None if self.is_default_model else "financial"
        return "sentiment-minus-sst2" if held_out else "sentiment"

    def generator_dir(self, name: str) -> pathlib.Path:
        """Stage 1's run directory for a trained generator (the generator is its `generator`)."""
        root = pathlib.Path(self.out) / "generators"
        return root / name if self.is_default_model else root / self.model / name

    def trained_generator(self, name: str) -> pathlib.Path:
        """Where stage 1 saves the generator `name` (inside its run directory)."""
        return self.generator_dir(name) / "generator"

    def generator_path(self, task: str, held_out: bool) -> str:
        name = self.generator_name(task, held_out)
        return SHIPPED_FINANCIAL if name is None else str(self.trained_generator(name))

    def stage1_command(self, name: str) -> list[str]:
        domain, exclude = self.generators()[name]
        cmd = [sys.executable, "-m", "cbp_jax.cli", "train-generator", "--domain", domain,
               "--model", self.model, "--steps", str(self.stage1_steps), "--max-len", "128",
               "--out", str(self.generator_dir(name))]  # fmt: skip
        return cmd + (["--exclude", ",".join(exclude)] if exclude else [])

    def run_config(self, task: str, column: str, seed: int) -> RunConfig:
        method, published, held, natural = column_parts(column)
        gen = self.generator_path(task, held) if method.startswith("cbp") else ""
        tag = "-".join(t for t, on in (("pub", published), ("held-out", held),
                                        ("natural", natural)) if on)  # fmt: skip
        # The first protocol's records ran with CSA and (BBT) the model's own ids as p0.
        first = {
            "strategy": LEGACY_STRATEGY,
            "p0": "ids" if method in ("bbt", "bbtv2") else "words",
        }
        proto = {"strategy": DEFAULT_STRATEGY, "p0": "words"} if published else first
        return RunConfig(
            task=task, method=method, model=self.model, seed=seed, shots=dict(self.shots)[task],
            kshot="natural" if natural else "balanced",
            budget=self.budget, population=self.population, test_size=self.test_size,
            pt_epochs=self.pt_epochs, generator=gen,
            tag=tag if published else ("held-out" if held else ""),
            out=str(pathlib.Path(self.out) / "runs"), **proto,
        )  # fmt: skip

    def columns(self, task: str) -> tuple[str, ...]:
        cols = [c for c in COLUMNS if task in NATURAL_TASKS or not c.endswith("_natural")]
        return tuple(c for c in cols if not self.only_columns or c in self.only_columns)

    def cells(self) -> list[Cell]:
        first = (("zero_shot", "cbp_z0"), ("bbt", "cbp"), ("prompt_tuning",))
        cheap = ("published/cbp_z0_held_out", "published/cbp_z0_natural")
        decisive = (
            ("published/cbp_held_out",),
            ("published/bbt",),
            ("published/bbtv2",),
            ("published/cbp_natural",),
            ("published/bbt_natural", "published/prompt_tuning_natural"),
            ("published/cbp",),
        )
        order = []
        for cols in (*first, cheap, *decisive):
            for seed in self.seeds:  # seed by seed: one finished seed gives whole rows
                for task in self.tasks_by_priority():
                    order += [(task, c, seed) for c in cols if c in self.columns(task)]
        seen, cells = set(), []  # a column listed twice is planned once
        for task, col, seed in order:
            if (task, col, seed) not in seen:
                seen.add((task, col, seed))
                cells.append(Cell(f"{task}/{col}/seed{seed}", self.run_config(task, col, seed)))
        return cells

    def tasks_by_priority(self) -> tuple[str, ...]:
        """sst2 first (its held-out generator is the papers' case), then the others."""
        return tuple(sorted(self.tasks, key=lambda t: t != "sst2"))

    def runnable(self, cell: Cell) -> bool:
        """Whether `run` should run this cell if it has no record (not superseded)."""
        return cell.name.split("/")[1] not in SUPERSEDED


def ensure_generators(cfg: PaperBudgetConfig, needed: list[str], log=print) -> None:
    """Train (provider side, stage 1) each needed generator that is not on disk."""
    for name in needed:
        target = cfg.trained_generator(name)
        if (ROOT / target).exists() or target.exists():
            continue
        cmd = cfg.stage1_command(name)
        log("stage 1: " + " ".join(cmd))
        subprocess.run(cmd, cwd=ROOT, check=True)


def generators_for(cfg: PaperBudgetConfig, cells: list[Cell]) -> list[str]:
    """Names of the trained (not shipped) generators that `cells` use."""
    by_path = {str(cfg.trained_generator(n)): n for n in cfg.generators()}
    return sorted({by_path[c.config.generator] for c in cells if c.config.generator in by_path})
