"""What an API budget buys a black-box run, before it starts (pure, no model needed).

It is the engine's schedule (`calls.schedule`, run by methods/blackbox.py): one dev
evaluation of the start point when the budget allows it, then chunks of at most `chunk`
generations, each chunk followed by one dev evaluation, while the rest of the budget pays
for a whole generation and its dev evaluation. One API call is one candidate scored on the
whole k-shot batch, so a generation costs `population` calls and a dev evaluation one call:
roughly generations = (budget - dev evaluations) // population. `candidate_cost` and `eval_cost`
let the same schedule be priced in other units.
"""

from __future__ import annotations

import dataclasses

from cbp_jax.methods.calls import schedule

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
