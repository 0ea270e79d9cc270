"""The ablations study's plan: its config, the sweeps of one task, one cell per (stem, task).

Per task: one k-shot split (data seed `data_seed`), one random projection per d, and `seeds`
ES seeds. The population and d sweeps are `sweep_shapes` calls (one compile per (P, d), the
seeds vmapped); the sigma0 sweep is ONE compiled call over every (sigma0, seed). Runs in the
population sweep all spend the same API budget (`budget_per_run` calls in the papers' unit,
train only: generations = budget // (P x B)); the others use the generations that P =
`population` buys at that budget. Strategy: Sep-CMA-ES (diagonal; P to 10^3 and d to 2000).
Scoring is chunked to a memory budget (`chunk_for_memory`). The ES mean after the last
generation is scored on the test split by the experimenter's own unlimited evaluator.
study.py runs it through the experiment layer and writes its tables and plots.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from cbp_jax.data.batching import make_inputs
from cbp_jax.data.splits import kshot_splits
from cbp_jax.data.tasks import get_task
from cbp_jax.experiment.records import Cell
from cbp_jax.methods.bbt import bbt_parameterization
from cbp_jax.methods.chunked_scoring import evaluate_vectors
from cbp_jax.methods.sweep import SweepConfig, Sweeper, make_hparams, sweep_shapes
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.service import ScoringService
from cbp_jax.service.memory import chunk_for_memory
from cbp_jax.service.oracle import SoftPrompt

SWEEPS = ("population", "dims", "sigma")


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """The sweeps: which, over which values, on which tasks and seeds, at which budget."""

    model: str = "smollm2-135m"
    tasks: tuple[str, ...] = ("financial_phrasebank", "copa", "mmlu_medical")
    sweeps: tuple[str, ...] = SWEEPS
    shots: int = 8  # per class, train
    data_seed: int = 13
    seeds: tuple[int, ...] = (0, 1, 2)
    budget_per_run: int = 200_000  # API calls per run (train scoring only)
    populations: tuple[int, ...] = (10, 30, 100, 300, 1000)
    dims: tuple[int, ...] = (50, 200, 500, 1000, 2000)
    sigmas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    population: int = 20  # for the d and sigma0 sweeps
    num_dims: int = 500  # for the population and sigma0 sweeps
    sigma0: float = 1.0
    prompt_len: int = 10
    test_size: int = 400
    memory_bytes: int = 2 << 30  # activation budget of one scoring chunk
    strategy: str = "sep_cma"
    quick: bool = False

    def __post_init__(self):
        if set(self.sweeps) - set(SWEEPS) or not self.sweeps:
            raise ValueError(f"sweeps must be a non-empty subset of {SWEEPS}")
        if not self.tasks or not self.seeds or min(self.shots, self.test_size) < 1:
            raise ValueError("need tasks, seeds, shots >= 1 and test_size >= 1")
        if min(self.populations + (self.population,)) < 2 or min(self.sigmas) <= 0:
            raise ValueError("populations must be >= 2 and sigmas positive")


QUICK = dict(
    tasks=("financial_phrasebank",),
    shots=2,
    seeds=(0, 1),
    budget_per_run=120,
    populations=(10, 20),
    dims=(50, 100),
    sigmas=(0.5, 1.0),
    population=10,
    num_dims=50,
    prompt_len=4,
    test_size=24,
    quick=True,
)


def run_task(cfg: AblationConfig, model, name: str, log=print) -> dict:
    """Every sweep of `cfg` on task `name`: per sweep, per value, test accuracy per seed,
    train-loss curves and the calls spent (log: progress lines)."""
    task, tok = get_task(name), model.tokenizer
    splits = kshot_splits(name, cfg.shots, cfg.data_seed, test_size=cfg.test_size)
    train, test = make_inputs(tok, task, splits.train), make_inputs(tok, task, splits.test)
    b, s = train.tokens_BxS.shape
    chunk = chunk_for_memory(cfg.memory_bytes, model.cfg, b, s, cfg.prompt_len)
    service = ScoringService(model, (SoftPrompt(),), population_chunk=chunk)
    evaluator = ScoringService(model, (SoftPrompt(),))
    info = service.public_info()

    def make_param(d):  # one projection per d, the same for every seed and P
        proj = ProjectionConfig(num_dims=d, prompt_len=cfg.prompt_len, sigma=cfg.sigma0)
        return bbt_parameterization(jax.random.key(cfg.data_seed + d), info, proj)

    keys = jax.vmap(jax.random.key)(np.array(cfg.seeds))
    n = len(cfg.seeds)
    base = SweepConfig(cfg.strategy, cfg.population, 1, population_chunk=chunk)

    def test_acc(param, z_SxR):
        _, acc = evaluate_vectors(evaluator, param, z_SxR, test, buckets=4, chunk=1)
        return [float(a) for a in acc]

    out = {"n_train": b, "n_test": len(splits.test), "chunk": chunk}
    shape_sweeps = {
        "population": [(p, cfg.num_dims) for p in cfg.populations],
        "dims": [(cfg.population, d) for d in cfg.dims],
    }
    for sweep, shapes in shape_sweeps.items():
        if sweep not in cfg.sweeps:
            continue
        log(f"{name}: {sweep} sweep, {len(shapes)} values x {n} seeds in one compiled call")
        res = sweep_shapes(
            service,
            make_param,
            train,
            base,
            shapes,
            keys,
            make_hparams(n, sigma0=cfg.sigma0),
            budget_per_run=cfg.budget_per_run,
        )
        out[sweep] = [
            {
                "value": shape[0] if sweep == "population" else shape[1],
                "generations": int(r.curves["loss_mean"].shape[1]),
                "calls_per_run": r.calls // n,
                "test_acc": test_acc(make_param(shape[1]), r.final_mean_SxR),
                "final_train_loss": r.curves["loss_mean"][:, -1].tolist(),
                "train_loss_curves": r.curves["loss_mean"].tolist(),  # seed x generation
            }
            for shape, r in res.items()
        ]
    if "sigma" in cfg.sweeps:  # every (sigma0, seed) in one compiled call
        log(f"{name}: sigma sweep, {len(cfg.sigmas)} values x {n} seeds in one compiled call")
        param = make_param(cfg.num_dims)
        gens = cfg.budget_per_run // (cfg.population * b)
        sweeper = Sweeper(service, param, train, dataclasses.replace(base, generations=gens))
        sig = np.repeat(np.array(cfg.sigmas, np.float32), n)
        res = sweeper.run(
            keys[np.tile(np.arange(n), len(cfg.sigmas))], make_hparams(len(sig), sigma0=sig)
        )
        accs = test_acc(param, res.final_mean_SxR)
        out["sigma"] = [
            {
                "value": v,
                "generations": gens,
                "calls_per_run": res.calls // len(sig),
                "test_acc": accs[i * n : (i + 1) * n],
                "final_train_loss": res.curves["loss_mean"][i * n : (i + 1) * n, -1].tolist(),
                "train_loss_curves": res.curves["loss_mean"][i * n : (i + 1) * n].tolist(),
            }
            for i, v in enumerate(cfg.sigmas)
        ]
    out["calls_used"] = service.calls_used
    log(f"{name}: done")
    return out


def cells(cfg: AblationConfig, stem: str) -> list[Cell]:
    """One cell per (output stem, task); its payload is the whole config with that task."""
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "tasks"}
    return [Cell(f"{stem}/{t}", {**base, "task": t}) for t in cfg.tasks]
