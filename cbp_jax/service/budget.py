"""API-call accounting: one call = one candidate prompt scored on one batch of examples.

This is BBT's unit (METHODS.md): the count is the population size of each request, whatever
its number of examples, so scoring 20 candidates one by one or in one batch costs the same,
20 calls. A request that would overrun the
budget is refused whole, before any compute, with `BudgetExhaustedError`.
"""

from __future__ import annotations

import dataclasses

from cbp_jax.contract import BudgetExhaustedError


@dataclasses.dataclass
class ApiBudget:
    """Mutable counter owned by the service. `limit=None` means unlimited."""

    limit: int | None = None
    used: int = 0

    def __post_init__(self):
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"API budget must be >= 0, got {self.limit}")

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else self.limit - self.used

    def charge(self, calls: int) -> None:
        if calls < 0:
            raise ValueError(f"cannot charge a negative number of calls ({calls})")
        if self.limit is not None and self.used + calls > self.limit:
            raise BudgetExhaustedError(
                f"API budget exhausted: {self.used} of {self.limit} calls used, "
                f"request needs {calls} more"
            )
        self.used += calls
