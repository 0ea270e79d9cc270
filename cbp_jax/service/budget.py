"""API-call accounting: one call = one candidate prompt scored on one batch of examples.

BBT's unit (docs/methods.md): a request costs its population P, whatever its number of
examples. A request that would overrun the budget is refused whole, before any compute,
with `BudgetExhaustedError`. `Budget` is the interface the provider core charges through:
`hold` before compute (or raise), `commit` once the scores are checked (recording the
response where the budget keeps records), `release` on any failure. `ApiBudget` is the
in-memory one (the in-process service); `serve.ledger.Ledger` keeps per-user budgets and
responses in SQLite (the HTTP service).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

from cbp_jax.contract import BudgetExhaustedError

__all__ = ["ApiBudget", "Budget", "BudgetExhaustedError"]


@runtime_checkable
class Budget(Protocol):
    """Per-account call budget: hold before compute, commit after, release on failure."""

    def hold(self, user: str, calls: int) -> None:
        """Reserve `calls` for a request about to be computed, or raise BudgetExhaustedError."""

    def release(self, user: str, calls: int) -> None:
        """Drop a hold (the request failed; nothing is charged)."""

    def commit(
        self,
        user: str,
        request_id: str | None,
        run_id: str,
        body_sha256: str,
        calls: int,
        response: bytes,
        client: str = "",
    ) -> tuple[bytes, int]:
        """Turn a hold into a charge (and record the response under `request_id`, with the
        sending `client`, where kept); returns (the response to send, the calls charged)."""

    def budget(self, user: str, run_id: str | None = None) -> dict:
        """{"user", "budget", "used", "remaining", "run_used"}."""


def exhausted_error(used: int, limit: int, held: int, calls: int) -> BudgetExhaustedError:
    """The error of a request needing `calls` more (one message for every budget)."""
    return BudgetExhaustedError(
        f"API budget exhausted: {used} of {limit} calls used"
        + (f" ({held} more in flight)" if held else "")
        + f", request needs {calls} more"
    )


@dataclasses.dataclass
class ApiBudget:
    """In-memory `Budget` of one account, owned by the service. `limit=None`: unlimited.
    Keeps no records (`commit` returns the response it is given)."""

    limit: int | None = None
    used: int = 0
    held: int = 0

    def __post_init__(self):
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"API budget must be >= 0, got {self.limit}")

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else self.limit - self.used

    def hold(self, user: str, calls: int) -> None:
        if calls < 0:
            raise ValueError(f"cannot charge a negative number of calls ({calls})")
        if self.limit is not None and self.used + self.held + calls > self.limit:
            raise exhausted_error(self.used, self.limit, self.held, calls)
        self.held += calls

    def release(self, user: str, calls: int) -> None:
        self.held -= calls

    def commit(self, user, request_id, run_id, body_sha256, calls, response, client=""):
        self.held -= calls
        self.used += calls
        return response, calls

    def charge(self, calls: int) -> None:
        """Hold and commit at once: calls a compiled loop is about to make (`reserve`)."""
        self.hold("", calls)
        self.commit("", None, "", "", calls, b"")

    def budget(self, user: str = "", run_id: str | None = None) -> dict:
        remaining = self.remaining
        return {"user": user, "budget": self.limit, "used": self.used,
                "remaining": remaining, "run_used": self.used}  # fmt: skip
