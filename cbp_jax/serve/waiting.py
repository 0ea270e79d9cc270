"""Waiting in the scoring server: the fair queue of work, a request's body, its scores, and a
retried request id in flight.

- `FairQueue` (the batcher's): one FIFO per user; `get` takes the head of the least recently
  served user (ties: the older head), so a request waits behind at most one chunk of each
  other waiting user; `put_front` puts a started request's rest back; `put(None)` closes.
- `read_body`: the body, refused (413) past the size limit, also when its Content-Length
  lies; the caller bounds the time (408).
- `wait_for_job`: the batcher's answer, until the job's deadline (TimeoutError) or the
  client is gone (ClientGoneError, 499); any way out but an answer cancels the job, and
  the worker stops at its next chunk, charging nothing.
- `InFlight`: a retry of an `X-Request-Id` whose first attempt is still computing waits for
  it (bounded, else 503), then is answered from the record (or computed, if that attempt
  charged nothing), instead of asking a second budget hold (402 at the budget edge for a
  request then charged). Another body under an id in flight is refused (409).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time

from starlette.requests import Request

from cbp_jax.contract import RequestIdConflictError
from cbp_jax.serve.answers import HttpError
from cbp_jax.serve.limits import PayloadTooLargeError

POLL_S = 0.5  # how often a waiting request checks whether its client went away


class FairQueue:
    """Thread-safe round-robin queue over users; items carry a `user` attribute."""

    def __init__(self):
        self._queues: dict[str, collections.deque] = {}  # users with work: (seq, item)
        self._served: dict[str, int] = {}  # user -> turn of their last service
        self._seq = self._turn = 0
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item) -> None:
        with self._cond:
            if item is None:
                self._closed = True
            else:
                self._queues.setdefault(item.user, collections.deque()).append((self._seq, item))
                self._seq += 1
            self._cond.notify_all()

    def put_front(self, item) -> None:
        """Put a started item back at the head of its user's queue: served before that
        user's later items, after other users' turns."""
        with self._cond:
            self._queues.setdefault(item.user, collections.deque()).appendleft((-1, item))
            self._cond.notify_all()

    def empty(self) -> bool:
        with self._cond:
            return not self._queues

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def get(self, timeout: float | None = None):
        """The next user's oldest item; None when closed and drained, or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queues:
                if self._closed:
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)
            user = min(self._queues, key=lambda u: (self._served.get(u, -1), self._queues[u][0][0]))
            queue = self._queues[user]
            _, item = queue.popleft()
            if not queue:
                del self._queues[user]
            self._served[user], self._turn = self._turn, self._turn + 1
            return item


class ClientGoneError(HttpError):
    """The client disconnected while its request was queued or computing (499: nobody reads
    it; the status is for the access log)."""

    def __init__(self):
        super().__init__(499, "the client went away; nothing was charged")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLargeError(f"request body of {declared} bytes exceeds {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def wait_for_job(job, future, gone=None):
    """The result of `future` (the batcher's, for `job`); `gone`: async () -> bool."""
    waiting = asyncio.wrap_future(future)
    try:
        while not waiting.done():
            left = job.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            await asyncio.wait({waiting}, timeout=min(left, POLL_S))
            if not waiting.done() and gone is not None and await gone():
                raise ClientGoneError
        return waiting.result()
    finally:
        job.cancel.set()  # if still queued or computing, the worker stops at its next chunk
        waiting.cancel()


class InFlight:
    """Claims of (user, request id) by the attempt computing it; used from one event loop."""

    def __init__(self):
        self._claims: dict[tuple[str, str], tuple[str, asyncio.Event]] = {}
        self.waiting = 0  # retries waiting for an attempt in flight (tests read it)

    @contextlib.asynccontextmanager
    async def claim(self, user: str, rid: str, digest: str, timeout_s: float):
        """Hold `rid` for the body with sha256 `digest` while the block runs; first wait
        (up to `timeout_s`, else HttpError 503) for an attempt of the same id."""
        key = (user, rid)
        while key in self._claims:
            other, done = self._claims[key]
            if other != digest:
                raise RequestIdConflictError(f"request id {rid} is in flight for another body")
            self.waiting += 1
            try:
                await asyncio.wait_for(done.wait(), timeout_s)
            except TimeoutError:
                raise HttpError(503, f"request id {rid} still in flight after {timeout_s:g} s; "
                                "retry later", retry_after=1) from None  # fmt: skip
            finally:
                self.waiting -= 1
        done = asyncio.Event()
        self._claims[key] = (digest, done)
        try:
            yield
        finally:
            del self._claims[key]
            done.set()
