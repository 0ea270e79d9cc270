"""An in-process scoring server on loopback (uvicorn in a thread) for the serve tests.

Faster than a subprocess (the tiny model is built once per test module, no second JAX
start-up) and it exposes the `ScoreServer` itself, so a test can read the ledger and the
batcher's counters directly.
"""

from __future__ import annotations

import socket
import threading
import time
import types

import requests
import uvicorn

from cbp_jax.serve.answers import uvicorn_options
from cbp_jax.serve.app import create_app
from cbp_jax.serve.batcher import BatchConfig
from cbp_jax.serve.ledger import UserSpec
from cbp_jax.serve.limits import GuardConfig
from tests.serve_tiny import tiny_server

GUARD, BATCHING = GuardConfig(), BatchConfig()
KEYS = {"alice": "alice-key-0001", "bob": "bob-key-00002", "carol": "carol-key-0003"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """Serve `tiny_server` on 127.0.0.1 from a thread; `url`, `server`, `stop()`."""

    def __init__(
        self, db, budgets: dict, *, guard=GUARD, batching=BATCHING, graceful_s=None,
        make=tiny_server,
    ):  # fmt: skip
        """`make(args)`: the ScoreServer to serve (default: the tiny model's)."""
        args = types.SimpleNamespace(
            db=str(db), users=None, key=[f"{n}:{KEYS[n]}:{b}" for n, b in budgets.items()],
            max_body_bytes=8 << 20, batch_window_ms=batching.window_ms,
            max_pack=batching.max_requests, max_rows=batching.max_rows,
        )  # fmt: skip
        self.server = make(args)
        self.server.guard = guard
        self.server.throttle.config = self.server.shedder.config = guard
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(self.server), host="127.0.0.1", port=self.port, log_level="critical",
            timeout_graceful_shutdown=graceful_s, **uvicorn_options(),
            log_config=None,  # leave logging alone: pytest's capture handlers stay open
        )  # fmt: skip
        self._uvicorn = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._uvicorn.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 600  # start-up deadline, not a timing assertion
        while not self._uvicorn.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("in-process server did not start")
            time.sleep(0.05)

    def used(self, user: str) -> int:
        return self.server.ledger.budget(user)["used"]

    def post(self, body: bytes, user: str | None = "alice", rid=None, timeout=600, **headers):
        h = {"Content-Type": "application/msgpack", **headers}
        if user is not None:
            h["X-API-Key"] = KEYS.get(user, user)
        if rid is not None:
            h["X-Request-Id"] = rid
        return requests.post(self.url + "/v1/score", data=body, headers=h, timeout=timeout)

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(timeout=120)
        self.server.batcher.close()
        self.server.ledger.close()


def users(**budgets) -> list[UserSpec]:
    return [UserSpec(n, KEYS[n], b) for n, b in budgets.items()]
