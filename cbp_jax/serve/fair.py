"""Fair queue of score requests: one FIFO per user, served round robin.

A single arrival-ordered queue lets one user who queued many large requests hold every
other user's small request behind all of them. Here each user has a queue, and `get`
takes the head of the next user in turn (a user who just got served goes to the back), so
a request waits behind at most one request (one batch) of each other waiting user.
Per-request work is bounded separately (`ServeLimits.max_work_tokens`), which bounds that
wait. `put(None)` closes the queue: `get` then returns None once it is empty.
"""

from __future__ import annotations

import collections
import threading
import time


class FairQueue:
    """Thread-safe round-robin queue over users; items carry a `user` attribute."""

    def __init__(self):
        self._queues: dict[str, collections.deque] = {}
        self._order: collections.deque[str] = collections.deque()  # users with work, in turn
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item) -> None:
        with self._cond:
            if item is None:
                self._closed = True
            else:
                user = item.user
                if user not in self._queues:
                    self._queues[user] = collections.deque()
                    self._order.append(user)
                self._queues[user].append(item)
            self._cond.notify_all()

    def empty(self) -> bool:
        with self._cond:
            return not self._order

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def get(self, timeout: float | None = None):
        """The next user's oldest item; None when closed and drained, or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._order:
                if self._closed:
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)
            user = self._order.popleft()
            queue = self._queues[user]
            item = queue.popleft()
            if queue:
                self._order.append(user)  # served: to the back of the turn
            else:
                del self._queues[user]
            return item
