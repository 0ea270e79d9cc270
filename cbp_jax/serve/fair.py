"""Fair queue of score requests: one FIFO per user, served round robin.

A single arrival-ordered queue lets one user who queued many large requests hold every
other user's small request behind all of them. Here each user has a queue, and `get`
takes the head of the least recently served user with work waiting (ties: the older
head), so a request waits behind at most one request (one batch) of each other waiting
user, including the one being computed when it arrived.
Per-request work is bounded separately (`ServeLimits.max_work_tokens`), which bounds that
wait. `put_front` puts a started request's remaining chunks back (the batcher serves a
request one chunk per turn). `put(None)` closes the queue: `get` then returns None once it is empty.
"""

from __future__ import annotations

import collections
import threading
import time


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
        """Put a started item (a request's remaining chunks) back at the head of its
        user's queue: served before that user's later items, after other users' turns."""
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
