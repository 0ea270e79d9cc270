"""Run one method on one task: `python -m cbp_jax.run --task sst2 --method bbt --seed 42`.

Methods: zero_shot, bbt, bbtv2 (black-box, with an API budget), prompt_tuning (white-box
upper bound), and CBP with a trained generator (`--generator PATH`): cbp_z0 (z0 alone) and
cbp (stage 2 from z0). Writes `<out>/<task>/<method>[-<tag>]/seed<seed>-<hash>/result.json`
(plus the ES log and checkpoint, which an interrupted run resumes from) and prints it.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import shlex
import sys
import typing

from cbp_jax.data.splits import check_proportions, kshot_splits
from cbp_jax.experiment.remote import add_remote_options, remote_of
from cbp_jax.experiment.runner import run

METHODS = ("zero_shot", "bbt", "bbtv2", "prompt_tuning", "cbp_z0", "cbp")
# The CMA-ES every run recorded before 2026-12-07 used (CSA step size; cbp_jax.es). Plans
# whose committed records ran with it pin it, so their cells keep matching their records.
LEGACY_STRATEGY = "lazy_cma"


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
    strategy: str = "pycma"  # cbp_jax.es.DEFAULT_STRATEGY; records before 2026-12-07: lazy_cma
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
    dtype: str = "auto"  # auto: bf16 where the chip has it natively (model.precision)
    p0_offset: int = 1000  # p0="ids": embeddings of ids p0_offset..+T-1; -1: p0 = 0
    curve: str = "250,500,1000,2000,4000,8000"  # calls at which the kept z is tested
    bbtv2_sigma0: float = 0.2  # BBTv2's CMA-ES step size (its README; BBT's is sigma0 = 1)
    p0: str = "words"  # BBT/BBTv2 p0 (service.p0): words (BBT's prefix) | ids | zero

    @staticmethod
    def record_defaults(recorded: dict) -> dict:
        """The value of every field for a committed record's config `recorded` that lacks it:
        the value the code had when the record ran (`LEGACY_VALUES`), else today's default.
        `RecordStore` asks a RunConfig cell for these, so an old BBT record never passes for
        a new-p0 run."""
        out = {f.name: f.default for f in dataclasses.fields(RunConfig)}
        for field, (value, methods) in LEGACY_VALUES.items():
            if recorded.get("method", RunConfig.method) in methods:
                out[field] = value
        return out

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {METHODS}")
        if self.shots <= 0:
            raise ValueError("shots must be positive")
        check_proportions(self.kshot)
        from cbp_jax.es import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; known: {sorted(STRATEGIES)}")
        if self.method.startswith("cbp") and not self.generator:
            raise ValueError(f"method {self.method} needs --generator PATH (a stage-1 generator)")
        from cbp_jax.model.precision import DTYPES

        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; choose 'auto' or one of {DTYPES}")
        if self.p0_offset < -1:
            raise ValueError(f"p0_offset must be >= 0, or -1 for no p0; got {self.p0_offset}")
        from cbp_jax.service.p0 import check_mode

        check_mode(self.p0)
        self.curve_budgets()  # raises on a malformed list

    def curve_budgets(self) -> tuple[int, ...]:
        """The budgets (calls) of the budget curve that this run's budget reaches."""
        try:
            budgets = sorted({int(x) for x in self.curve.split(",") if x.strip()})
        except ValueError as e:
            raise ValueError(
                f"curve must be comma-separated call counts, got {self.curve!r}"
            ) from e
        if budgets and budgets[0] <= 0:
            raise ValueError(f"curve budgets must be positive, got {self.curve!r}")
        return tuple(b for b in budgets if b <= self.budget)

    def projection(self):
        """BBT/BBTv2's random projection config (user side)."""
        from cbp_jax.prompts.projection import ProjectionConfig

        return ProjectionConfig(num_dims=self.num_dims, prompt_len=self.prompt_len)

    def p0_token_ids(self, tokenizer):
        """Provider side: the T token ids of the served model (`tokenizer`) whose embeddings
        are BBT/BBTv2's p0, or None (no p0); see `cbp_jax.service.p0`."""
        from cbp_jax.service.p0 import p0_token_ids

        return p0_token_ids(self.p0, tokenizer, self.prompt_len, self.p0_offset)

    def identity(self) -> str:
        """The hash of the whole config but `out`, a custom task by its content key
        (`tasks.run_key`); a `LEGACY_VALUES` field at the value runs had before it existed is
        left out, so adding it moved no earlier run's directory."""
        from cbp_jax.data.tasks import run_key
        from cbp_jax.experiment.identity import config_hash

        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "out"}
        then = record_defaults(fields)
        fields = {k: v for k, v in fields.items() if k not in LEGACY_VALUES or v != then[k]}
        return config_hash({**fields, "task": run_key(self.task)})

    def blackbox(self):
        """The engine config of this black-box run (BBT, BBTv2, CBP stage 2), at its
        method's step size (sigma0, bbtv2_sigma0, cbp_sigma0)."""
        from cbp_jax.methods.blackbox import BlackBoxConfig

        sigma0 = {"bbtv2": self.bbtv2_sigma0, "cbp": self.cbp_sigma0}.get(self.method, self.sigma0)
        names = ("strategy", "population", "budget", "loss", "chunk", "dev_margin", "seed")
        return BlackBoxConfig(sigma0=sigma0, **{k: getattr(self, k) for k in names})

    def prompt_tuning(self):
        """The white-box prompt tuning config of this run."""
        from cbp_jax.methods.prompt_tuning import PromptTuningConfig

        return PromptTuningConfig(prompt_len=self.prompt_len, epochs=self.pt_epochs,
                                  learning_rate=self.pt_lr, seed=self.seed)  # fmt: skip

    def splits(self):
        """This run's k-shot train and dev sets and test subset (a pure function of the config)."""
        return kshot_splits(
            self.task, self.shots, self.seed, test_size=self.test_size, proportions=self.kshot
        )

    @property
    def run_dir(self) -> pathlib.Path:
        """<out>/<task key>/<method>[-<tag>]/seed<seed>-<hash>; the task key is a shipped task's
        name or a custom task's name plus a hash of its config (`tasks.run_key`), never a
        path, so an absolute or ../ config path stays inside `out`."""
        from cbp_jax.data.tasks import run_key

        method = f"{self.method}-{self.tag}" if self.tag else self.method
        leaf = f"seed{self.seed}-{self.identity()[:8]}"  # a changed config is a new run
        return pathlib.Path(self.out) / run_key(self.task) / method / leaf


# Fields whose value in records written before the field existed is not today's default.
# p0 (added with p0="words"): BBT/BBTv2 ran with the model's own ids p0_offset.. (zero when
# p0_offset was -1), which is p0="ids"; the other methods have no p0, so today's default.
P0_METHODS = ("bbt", "bbtv2")
LEGACY_VALUES = {"p0": ("ids", P0_METHODS)}  # field -> (value it ran with, for these methods)


record_defaults = RunConfig.record_defaults


# Help of each option (one per RunConfig field; tests/test_newcomer.py checks none is missing)
HELP = {
    "task": "a shipped task (sst2, financial_phrasebank, ...) or the path of your own task's "
    "JSON config (see examples/tasks/)",
    "method": "zero_shot | bbt | bbtv2 | prompt_tuning | cbp_z0 | cbp",
    "model": "registered model name, .gguf file or Hugging Face folder",
    "shots": "k-shot examples per class, in train and in dev each",
    "kshot": "class proportions of the k-shot sets: balanced (k per class) or natural "
    "(k x classes in the train pool's proportions)",
    "seed": "seed of the k-shot sets, the test subset and the search",
    "test_size": "test examples drawn from the task's test pool (same subset for a seed)",
    "budget": "API calls for the black-box methods (train and dev together)",
    "population": "CMA-ES candidates per generation",
    "num_dims": "BBT/BBTv2: dimension of the searched vector z",
    "prompt_len": "soft-prompt tokens (BBT, BBTv2, prompt tuning)",
    "sigma0": "BBT/BBTv2: CMA-ES initial step size",
    "strategy": "evolution strategy: pycma (pycma's default: TPA step size for d >= 300, "
    "else CSA), tpa_cma, lazy_cma (CSA; every record before 2026-12-07), cma (evosax) or "
    "sep_cma (diagonal)",
    "loss": "black-box training loss on the returned scores: ce or hinge",
    "chunk": "generations per compiled call; the dev set is scored after each chunk",
    "bbtv2_layers": "BBTv2: comma-separated layer ids to tune (empty: all layers)",
    "pt_epochs": "prompt tuning: epochs over the k-shot train set",
    "pt_lr": "prompt tuning: learning rate",
    "generator": "CBP: directory of a saved stage-1 generator (cbp-jax train-generator)",
    "cbp_sigma0": "CBP: CMA-ES step size around z0",
    "dev_margin": "black-box: dev examples a new ES mean must gain to replace the kept one "
    "(0: any gain, ties on accuracy go to the lower dev loss)",
    "out": "root of the run directories: <out>/<task key>/<method>[-<tag>]/seed<seed>-<hash>",
    "dtype": "compute dtype: auto (bfloat16 on GPU/TPU and CPUs with AMX or AVX512-BF16, "
    "else float32), float32 or bfloat16",
    "p0_offset": "BBT/BBTv2 with --p0 ids: the prompt starts at the embeddings of the "
    "model's token ids p0_offset..; -1: a zero prompt",
    "p0": "BBT/BBTv2 prompt start p0: words (BBT's prefix, RoBERTa's ids 1000-1049 decoded, "
    "in this model's tokens), ids (this model's ids p0_offset..) or zero",
    "bbtv2_sigma0": "BBTv2: CMA-ES initial step size of every layer's ES (BBTv2 uses 0.2)",
    "curve": "black-box: comma-separated call counts at which the kept z is scored on the "
    "test subset (a budget curve from one run)",
    "tag": "extra run-directory label, e.g. the generator's name",
}


def parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The options of one run, one per RunConfig field (also `cbp-jax run`'s)."""
    p = argparse.ArgumentParser(
        prog="python -m cbp_jax.run",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        add_help=add_help,
    )
    add_options(p)
    add_remote_options(p)
    return p


def add_options(p, names=None, **defaults) -> None:
    """An option per RunConfig field in `names` (None: all), with its help (`HELP`) and
    default (`defaults` overrides it, e.g. `cbp-jax customize`'s dtype)."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if names is None or f.name in names:
            name, typ = "--" + f.name.replace("_", "-"), _option_type(hints[f.name])
            default = defaults.get(f.name, f.default)
            p.add_argument(name, type=typ, default=default, help=HELP[f.name])


def config_of(args: argparse.Namespace, **fields) -> RunConfig:
    """The RunConfig of parsed options (those that are fields), with `fields` set; a CBP run
    over --url without --generator uses the generator served there (recorded as the URL)."""
    names = {f.name for f in dataclasses.fields(RunConfig)}
    method = str(fields.get("method", getattr(args, "method", "")))
    if getattr(args, "url", "") and method.startswith("cbp") and not args.generator:
        fields = {"generator": args.url, **fields}
    return RunConfig(**{k: v for k, v in vars(args).items() if k in names} | fields)


def _option_type(hint) -> type:
    """The command-line type of a RunConfig field: its int, float or str (`int | None`
    reads as int)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if args[0] in (int, float, str) else str


def main(argv=None) -> dict:
    args = parser().parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    return execute(args, f"python -m cbp_jax.run {shlex.join(shown)}")


def execute(args: argparse.Namespace, command: str) -> dict:
    """Run the parsed options (`python -m cbp_jax.run` or `cbp-jax run`) and print the
    budget estimate, the command and the result."""
    cfg = config_of(args)
    if cfg.method in ("bbt", "cbp"):
        from cbp_jax.methods.calls import budget_lines

        print("\n".join(budget_lines(cfg.budget, cfg.population, cfg.chunk)), flush=True)
    result = run(cfg, remote=remote_of(args))
    print(f"command: {command}")
    from cbp_jax.data.tasks import get_task
    from cbp_jax.run_report import result_lines

    labels = [ex["label"] for ex in cfg.splits().test]
    print("\n".join(result_lines(cfg, result, get_task(cfg.task), labels)))
    return result


if __name__ == "__main__":
    main()
