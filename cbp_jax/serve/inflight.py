"""Request ids in flight: a retry of an id being computed waits for that attempt.

The client retries a request with the same `X-Request-Id` when an attempt times out on its
side, while the server may still be computing the first attempt. Looking the id up in the
ledger's record at that moment finds nothing, so the retry used to ask for a second
budget hold: at the budget edge it was refused 402 for a request that was then charged.
Here the first attempt claims its id until it is answered; a retry with the same body
waits for it (bounded) and is then answered from the record (or, if the first attempt
failed and charged nothing, computed itself); a different body under an id in flight is
refused (409), as the ledger refuses it once recorded.
"""

from __future__ import annotations

import asyncio
import contextlib

from cbp_jax.contract import RequestIdConflictError


class InFlightTimeoutError(TimeoutError):
    """A retry waited longer than its bound for the attempt in flight."""


class InFlight:
    """Claims of (user, request id) by the attempt computing it; used from one event loop."""

    def __init__(self):
        self._claims: dict[tuple[str, str], tuple[str, asyncio.Event]] = {}
        self.waiting = 0  # retries waiting for an attempt in flight (tests read it)

    def __len__(self) -> int:
        return len(self._claims)

    @contextlib.asynccontextmanager
    async def claim(self, user: str, rid: str, digest: str, timeout_s: float):
        """Hold `rid` for the body with sha256 `digest` while the block runs; first wait
        (up to `timeout_s`, else InFlightTimeoutError) for an attempt of the same id."""
        key = (user, rid)
        while key in self._claims:
            other, done = self._claims[key]
            if other != digest:
                raise RequestIdConflictError(f"request id {rid} is in flight for another body")
            self.waiting += 1
            try:
                await asyncio.wait_for(done.wait(), timeout_s)
            except TimeoutError:
                raise InFlightTimeoutError(
                    f"request id {rid} still in flight after {timeout_s:g} s; retry later"
                ) from None
            finally:
                self.waiting -= 1
        done = asyncio.Event()
        self._claims[key] = (digest, done)
        try:
            yield
        finally:
            del self._claims[key]
            done.set()
