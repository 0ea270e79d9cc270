"""Server-side time limits and the failed-authentication throttle of the scoring service.

- `read_timeout_s`: the whole request body must arrive within it (a Content-Length larger
  than the body sent, or a slow drip, is answered 408 and the connection freed).
- `request_timeout_s`: queue wait + compute of one score request; past it the request is
  answered 503 (retryable) and nothing is charged.
- `max_queued_per_user` / `max_queued`: score requests admitted and not yet answered (queued
  or computing), per user and in all; past either the request is shed before any budget
  hold or compute: 429 (this user's queue is full) or 503 (the server's), with Retry-After
  the expected seconds until a slot frees (`LoadShedder`).
- `auth_failures` per `auth_window_s` per client address and per key prefix: past it, a
  wrong key from that address (or with that prefix) is answered 429 with Retry-After
  instead of 401 until the window frees a slot. A correct key is checked first and always
  served, so one client's failures never lock out a valid key sharing its address (a proxy,
  loopback). A 429 answers only wrong keys, so it says nothing a 401 would not.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

from cbp_jax.overrides import check_positive
from cbp_jax.serve.answers import HttpError


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    read_timeout_s: float = 30.0
    request_timeout_s: float = 300.0
    auth_failures: int = 20
    auth_window_s: float = 60.0
    max_queued_per_user: int = 4
    max_queued: int = 32

    def __post_init__(self):
        check_positive(self, number=True)


class AuthThrottle:
    """Sliding-window counts of failed authentications per client address and per key
    prefix. A correct key is checked before the throttle and never blocked (many users may
    share one address behind a proxy, or all of loopback); a wrong key from an address or
    with a prefix over `auth_failures` is answered 429 instead of 401, with the seconds
    until the window frees a slot (Retry-After)."""

    PREFIX = 4  # characters of a presented key that name its prefix bucket

    def __init__(self, config: GuardConfig):
        self.config = config
        self._failures: dict[tuple[str, str], collections.deque] = {}
        self._lock = threading.Lock()

    def _buckets(self, address: str, key: str | None) -> tuple[tuple[str, str], ...]:
        return ("address", address), ("prefix", (key or "")[: self.PREFIX])

    def _recent(self, bucket: tuple[str, str], now: float) -> collections.deque:
        q = self._failures.get(bucket, collections.deque())
        while q and q[0] <= now - self.config.auth_window_s:
            q.popleft()
        return q

    def retry_after(self, address: str, key: str | None) -> float:
        """Seconds until a failure from here may be answered 401 again; 0 if not blocked."""
        with self._lock:
            now, wait = time.monotonic(), 0.0
            for bucket in self._buckets(address, key):
                q = self._recent(bucket, now)
                if not q:
                    self._failures.pop(bucket, None)  # forget buckets without recent failures
                elif len(q) >= self.config.auth_failures:
                    wait = max(wait, q[0] + self.config.auth_window_s - now)
            return wait

    def failed(self, address: str, key: str | None) -> None:
        with self._lock:
            now = time.monotonic()
            for bucket in self._buckets(address, key):
                self._failures[bucket] = self._recent(bucket, now)
                self._failures[bucket].append(now)


class LoadShedder:
    """Bounded per-user and global counts of admitted score requests (one event loop)."""

    def __init__(self, config: GuardConfig):
        self.config = config
        self.pending: dict[str, int] = {}
        self.total = 0
        self.seconds = 1.0  # moving average of one request's seconds, for Retry-After

    def admit(self, user: str) -> None:
        """Count the request in (call `done` once answered), or shed it: HttpError 429 (this
        user's queue is full) or 503 (the server's), Retry-After the seconds to free a slot."""
        mine, cfg = self.pending.get(user, 0), self.config
        if mine < cfg.max_queued_per_user and self.total < cfg.max_queued:
            self.pending[user], self.total = mine + 1, self.total + 1
            return
        if mine >= cfg.max_queued_per_user:
            status, queued, limit = 429, mine, cfg.max_queued_per_user
            why = f"{mine} of your requests are queued"
        else:
            status, queued, limit = 503, self.total, cfg.max_queued
            why = f"the server has {self.total} requests queued"
        reason = f"{why} (limit {limit}); nothing was charged, retry later"
        raise HttpError(status, reason, retry_after=max(1.0, self.seconds * queued))

    def done(self, user: str, seconds: float | None = None) -> None:
        self.pending[user] -= 1
        if not self.pending[user]:
            del self.pending[user]
        self.total -= 1
        if seconds is not None:
            self.seconds = 0.8 * self.seconds + 0.2 * seconds
