"""Server-side time limits and the failed-authentication throttle of the scoring service.

- `read_timeout_s`: the whole request body must arrive within it (a Content-Length larger
  than the body sent, or a slow drip, is answered 408 and the connection freed).
- `request_timeout_s`: queue wait + compute of one score request; past it the request is
  answered 503 (retryable) and nothing is charged.
- `auth_failures` per `auth_window_s` per client address: past it, every request from that
  address is answered 429 until the window has passed, without looking at the key (so a
  key cannot be guessed faster than this, and a 429 says nothing about the key).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time


@dataclasses.dataclass(frozen=True)
class GuardConfig:
    read_timeout_s: float = 30.0
    request_timeout_s: float = 300.0
    auth_failures: int = 20
    auth_window_s: float = 60.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"GuardConfig.{f.name} must be a positive number, got {value!r}")


class AuthThrottle:
    """Sliding-window count of failed authentications per client address."""

    def __init__(self, config: GuardConfig):
        self.config = config
        self._failures: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> collections.deque:
        q = self._failures.setdefault(address, collections.deque())
        while q and q[0] <= now - self.config.auth_window_s:
            q.popleft()
        return q

    def blocked(self, address: str) -> bool:
        with self._lock:
            now = time.monotonic()
            blocked = len(self._recent(address, now)) >= self.config.auth_failures
            if not self._failures[address]:
                del self._failures[address]  # forget addresses without recent failures
            return blocked

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address, time.monotonic()).append(time.monotonic())
