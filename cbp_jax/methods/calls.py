"""The user side's ledger of API calls, in BBT's unit, and what a budget buys.

One API call is one candidate scored on one batch of the user's k-shot set (train or dev),
whatever its size (docs/methods.md): a generation costs P calls, a dev evaluation of the ES
mean 1. `CallLedger` counts them (`dev_calls` apart) with the examples and text tokens
scored. `schedule` is the engine's schedule; `plan`, `plan_budget` and `budget_lines` (the
estimate printed before a run) say what a budget buys without running anything.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class CallLedger:
    """Running totals of one run; `calls` includes `dev_calls`."""

    calls: int = 0
    dev_calls: int = 0
    examples_scored: int = 0
    tokens_scored: int = 0

    def charge(self, inputs, candidates: int = 1, *, dev: bool = False) -> None:
        """Record `candidates` candidates scored on the whole of `inputs` (one batch)."""
        self.calls += candidates
        self.dev_calls += candidates if dev else 0
        self.examples_scored += candidates * int(inputs.tokens_BxS.shape[0])
        self.tokens_scored += candidates * int(inputs.mask_BxS.sum())

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def schedule(
    budget: int, per_generation: int, per_eval: int, chunk: int, eval_init: bool = True
) -> tuple[int, int, int]:
    """(generations, dev evaluations, calls spent) of the engine's schedule, priced per unit.

    The start point on dev (if eval_init and the budget covers it and one generation twice
    over in dev), then chunks of up to `chunk` generations (`per_generation` calls each),
    each followed by one dev evaluation (`per_eval` calls), while a generation and its dev
    evaluation still fit. `plan` and `plan_budget` are this schedule.
    """
    calls = gens = evals = 0
    if budget >= per_generation + per_eval:
        if eval_init and budget >= 2 * per_eval + per_generation:
            calls, evals = per_eval, 1
        while (n := min(chunk, (budget - calls - per_eval) // per_generation)) > 0:
            calls += n * per_generation + per_eval
            gens, evals = gens + n, evals + 1
    return gens, evals, calls


def plan(budget: int, population: int, chunk: int, eval_init: bool = True) -> tuple[int, int]:
    """(generations, dev evaluations) `run_blackbox` makes from scratch within `budget` calls:
    `schedule` in BBT's unit (a generation costs P calls, a dev evaluation 1)."""
    if min(budget, population, chunk) <= 0:
        raise ValueError("budget, population and chunk must be positive")
    gens, evals, _ = schedule(budget, population, 1, chunk, eval_init)
    return gens, evals


def budget_for_generations(generations: int, population: int, chunk: int) -> int:
    """The budget that `plan` spends exactly on `generations` generations, their dev
    evaluations and the start point's: 1 + G x P + ceil(G / chunk) calls."""
    if min(generations, population, chunk) <= 0:
        raise ValueError("generations, population and chunk must be positive")
    return 1 + generations * population + -(-generations // chunk)


MIN_GENERATIONS = 3  # fewer than this is hardly a search: warn
MAX_UNSPENT_SHARE = 0.05  # warn when more than this share of the budget would go unspent


@dataclasses.dataclass(frozen=True)
class BudgetPlan:
    budget: int
    population: int
    generations: int
    dev_evals: int
    calls: int  # what the run will spend

    @property
    def unspent(self) -> int:
        return self.budget - self.calls

    def describe(self) -> str:
        return (
            f"budget {self.budget} API calls: {self.generations} generations of "
            f"{self.population} candidates + {self.dev_evals} dev evaluations = "
            f"{self.calls} calls ({self.unspent} unspent)"
        )

    def warnings(self, min_generations: int = MIN_GENERATIONS) -> list[str]:
        out = []
        if self.generations < min_generations:
            out.append(
                f"the budget buys only {self.generations} generation(s) (fewer than "
                f"{min_generations}): raise --budget or lower --population"
            )
        if self.generations and self.unspent > MAX_UNSPENT_SHARE * self.budget:
            out.append(
                f"{self.unspent} of {self.budget} calls ({self.unspent / self.budget:.0%}) "
                f"would go unspent: a budget of {self.calls} buys the same run"
            )
        return out


def plan_budget(
    budget: int,
    population: int,
    chunk: int,
    *,
    eval_init: bool = True,
    candidate_cost: int = 1,
    eval_cost: int = 1,
) -> BudgetPlan:
    """The generations, dev evaluations and calls a run of this budget will spend."""
    for name, v in (("budget", budget), ("population", population), ("chunk", chunk)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if candidate_cost < 1 or eval_cost < 0:
        raise ValueError("candidate_cost must be >= 1 and eval_cost >= 0")
    gens, evals, calls = schedule(budget, population * candidate_cost, eval_cost, chunk, eval_init)
    return BudgetPlan(budget, population, gens, evals, calls)


def budget_lines(budget: int, population: int, chunk: int) -> list[str]:
    """The estimate printed before a black-box run, then its warnings."""
    plan = plan_budget(budget, population, chunk)
    return [f"estimate: {plan.describe()}"] + [f"WARNING: {w}" for w in plan.warnings()]
