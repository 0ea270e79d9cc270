"""The paper-budget tables: BBT, BBTv2 and CBP at 8000 calls (400 generations at P = 20).

One table per task (sst2, financial_phrasebank): zero-shot, the majority class, BBT, BBTv2,
white-box prompt tuning, CBP z0, CBP stage 2 with the task's domain generator, and on sst2
CBP with sst2 held out of stage 1. Calls are the papers' unit (one candidate on the whole
k-shot batch). Cells are planned cheapest and headline first (zero-shot, z0, then BBT and
CBP seed by seed, then BBTv2, PT and held-out CBP), so a sweep cut short fills whole rows.
The report reads the committed records only.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

from cbp_jax.experiment.records import Cell
from cbp_jax.model.registry import DEFAULT_MODEL
from cbp_jax.run import RunConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_FINANCIAL = "checkpoints/shipped/financial-generator"
COLUMNS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp_z0", "cbp", "cbp_held_out")


# how each column is named in tables and plots
LABELS = {
    "zero_shot": "zero-shot",
    "bbt": "BBT",
    "bbtv2": "BBTv2",
    "prompt_tuning": "prompt tuning (white-box)",
    "cbp_z0": "CBP z0 (no stage 2)",
    "cbp": "CBP (domain generator)",
    "cbp_held_out": "CBP (task held out of stage 1)",
}


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
        """The report's file stem: paper_budget for the default model, else with the model."""
        return "paper_budget" if self.is_default_model else f"paper_budget_{self.model}"

    @property
    def is_default_model(self) -> bool:
        return self.model == DEFAULT_MODEL

    def generators(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Generators trained on first need: name -> (domain, excluded tasks). The default
        model's financial generator is shipped; another model needs its own (its embeddings)."""
        gens = {"sentiment": ("sentiment", ()), "sentiment-minus-sst2": ("sentiment", ("sst2",))}
        return gens if self.is_default_model else {"financial": ("financial", ()), **gens}

    def generator_name(self, task: str, held_out: bool) -> str | None:
        """The generator a CBP cell of `task` uses (None: the shipped financial one)."""
        if task == "financial_phrasebank":
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
        method = "cbp" if column == "cbp_held_out" else column
        held = column == "cbp_held_out"
        gen = self.generator_path(task, held) if method.startswith("cbp") else ""
        return RunConfig(
            task=task, method=method, model=self.model, seed=seed, shots=dict(self.shots)[task],
            budget=self.budget, population=self.population, test_size=self.test_size,
            pt_epochs=self.pt_epochs, generator=gen,
            tag="held-out" if held else "", out=str(pathlib.Path(self.out) / "runs"),
        )  # fmt: skip

    def columns(self, task: str) -> tuple[str, ...]:
        cols = COLUMNS if task == "sst2" else COLUMNS[:-1]
        return tuple(c for c in cols if not self.only_columns or c in self.only_columns)

    def cells(self) -> list[Cell]:
        order = []
        for cols in (("zero_shot", "cbp_z0"), ("bbt", "cbp")):
            for seed in self.seeds:  # seed by seed: one finished seed gives whole rows
                for task in self.tasks:
                    order += [(task, c, seed) for c in cols if c in self.columns(task)]
        for col in ("bbtv2", "prompt_tuning", "cbp_held_out"):
            for seed in self.seeds:
                order += [(t, col, seed) for t in self.tasks if col in self.columns(t)]
        seen, cells = set(), []
        for task, col, seed in order:
            if (task, col, seed) not in seen:
                seen.add((task, col, seed))
                cells.append(Cell(f"{task}/{col}/seed{seed}", self.run_config(task, col, seed)))
        return cells


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
