"""The network service's bounds, all checked before any budget hold or compute.

- `ServeLimits` (per request, published in /v1/info): bytes, population, batch, sequence,
  prompt length, candidates and work, so that one caller cannot stall the shared compiled
  call or exhaust its memory (400; 413 for the body and the work caps).
- `GuardConfig`: the whole body within `read_timeout_s` (408: a Content-Length larger than
  the body sent, a slow drip); queue wait + compute within `request_timeout_s` (503,
  nothing charged); at most `max_queued_per_user` / `max_queued` requests admitted and not
  yet answered (`LoadShedder`: 429 / 503 with Retry-After); at most `auth_failures` wrong
  keys per `auth_window_s` per address and per key prefix (`AuthThrottle`: then 429, not
  401). A correct key is checked first and always served, so failures never lock out a
  valid key sharing an address (a proxy, loopback).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

import numpy as np

from cbp_jax.checks import check_positive
from cbp_jax.contract import MalformedRequestError, ScoreRequest, payload_dims
from cbp_jax.serve.answers import HttpError


class PayloadTooLargeError(MalformedRequestError):
    """The request body is larger than `ServeLimits.max_body_bytes` (HTTP 413)."""


class WorkTooLargeError(PayloadTooLargeError):
    """A request's work is over `max_work_tokens` or a call's over `max_call_tokens` (HTTP
    413, naming the cap): split it (RemoteService does so by itself)."""


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """Upper bounds per request. One call (one candidate on one batch) may cover at most
    `max_call_tokens` = batch x (sequence + prompt) tokens, and one request at most
    `max_work_tokens` = population x batch x (sequence + prompt): a call's price is fixed
    (1) but its work is bounded, so no request costs the server much more than its calls
    say. All counts are Python ints (no overflow)."""

    max_body_bytes: int = 8 << 20
    max_population: int = 256
    max_batch: int = 256
    max_seq_len: int = 512
    max_prompt_len: int = 64
    max_candidates: int = 64
    max_words: int = 8
    max_work_tokens: int = 1 << 20
    max_call_tokens: int = 1 << 15

    def public(self) -> dict:
        """The limits as published in /v1/info (what one request may ask)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __post_init__(self):
        check_positive(self)

    def check(self, req: ScoreRequest) -> None:
        """Raise MalformedRequestError naming the first limit the request exceeds."""
        tokens, cands = np.asarray(req.tokens_BxS), np.asarray(req.candidates_CxW)
        if tokens.ndim != 2 or cands.ndim != 2:
            raise MalformedRequestError(
                f"tokens and candidates must be 2-D, got {tokens.shape} and {cands.shape}"
            )
        b, s = tokens.shape
        c, w = cands.shape
        p, t = payload_dims(req.kind, req.payload)
        for name, got, limit in (
            ("population", p, self.max_population),
            ("batch", b, self.max_batch),
            ("sequence length", s, self.max_seq_len),
            ("prompt length", t, self.max_prompt_len),
            ("candidate classes", c, self.max_candidates),
            ("words per class", w, self.max_words),
        ):
            if got > limit:
                raise MalformedRequestError(f"{name} {got} exceeds this server's limit {limit}")
        for name, got, cap in (
            ("work (population x batch x tokens)", p * b * (s + t), "max_work_tokens"),
            ("tokens per call (batch x tokens)", b * (s + t), "max_call_tokens"),
        ):
            if got > getattr(self, cap):
                raise WorkTooLargeError(
                    f"{name} {got} exceeds this server's cap {cap} = {getattr(self, cap)}; "
                    "split the request (population, then batch)"
                )


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
    """Sliding-window counts of failed authentications per client address and key prefix."""

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
