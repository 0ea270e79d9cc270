"""The user side's ledger of API calls, in BBT's unit, and the engine's plan for a budget.

One API call is one candidate prompt scored on one batch of the user's k-shot set (train
or dev), whatever the batch's size (docs/methods.md maps this to BBT's code). A
CMA-ES generation costs P calls; one dev evaluation of the ES mean costs 1. `CallLedger`
counts them apart (`calls` is the total, `dev_calls` the part spent on dev) and records the
work behind them: examples scored (P x B per batch) and text tokens scored (P x the real
tokens of the batch). `plan` says how many generations and dev evaluations a budget buys
under the engine's schedule, without running anything.
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
    evaluation still fit. `plan` and `estimate.plan_budget` are this schedule.
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
