"""API keys, budgets and the response record of the network service, in SQLite (WAL mode).

`users`: name, sha256 of the API key, budget, calls used, tokens scored. `records`: one row
per scored request (request id, run id, body hash, calls, tokens, the response bytes, and
the client id that sent the charged attempt, so a replay can tell that client its own
attempt was charged); a file from before a column gets it added. Charging and recording
happen in ONE transaction after the scores are computed, so:

- a restart neither resets budgets nor double-charges; a request killed before its record
  is written costs nothing and was never answered;
- a retried request id is answered from `records` (same bytes, 0 calls); an id reused for
  another body is refused (409), also when both race: the body hash is compared inside the
  transaction that would claim the id;
- concurrent requests of one user cannot overrun the budget: `hold` reserves calls before
  compute, `commit` turns the hold into a charge, `release` drops it.

The users file is the source of truth for who exists: `sync_users` revokes every user not
in it (its row and usage stay, so re-adding a name does not reset its budget) and assigns
keys afresh. Keys are stored only as sha256 digests. Records are never pruned (deleting old
rows only loses idempotency for those ids).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sqlite3
import threading
import time

from cbp_jax.contract import RequestIdConflictError
from cbp_jax.service.budget import exhausted_error

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY, key_sha256 TEXT UNIQUE NOT NULL,
  budget INTEGER NOT NULL CHECK (budget >= 0), used INTEGER NOT NULL DEFAULT 0,
  tokens_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS records (
  user TEXT NOT NULL, request_id TEXT NOT NULL, run_id TEXT NOT NULL, body_sha256 TEXT NOT NULL,
  calls INTEGER NOT NULL, response BLOB NOT NULL, created REAL NOT NULL,
  client TEXT NOT NULL DEFAULT '', tokens INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (user, request_id));
CREATE INDEX IF NOT EXISTS records_run ON records (user, run_id);
"""


_REVOKED = "revoked:"  # key_sha256 prefix of a revoked user: no sha256 hex digest matches
_ACTIVE = f"WHERE key_sha256 NOT LIKE '{_REVOKED}%'"


@dataclasses.dataclass(frozen=True)
class UserSpec:
    """One API user: name, secret key and budget in calls (one call = one candidate prompt
    scored on one batch)."""

    name: str
    key: str
    budget: int

    def __post_init__(self):
        if not self.name or ":" in self.name:
            raise ValueError(f"user name must be non-empty without ':', got {self.name!r}")
        if len(self.key) < 8:
            raise ValueError(f"API key of {self.name!r} must have at least 8 characters")
        if not isinstance(self.budget, int) or self.budget < 0:
            raise ValueError(f"budget of {self.name!r} must be an int >= 0, got {self.budget!r}")

    @classmethod
    def parse(cls, text: str, where: str = "user spec") -> UserSpec:
        """NAME:KEY:BUDGET (as in `--key` and each line of a `--users` file). Errors name
        `where` (e.g. "users.txt line 3") and never echo the line: it holds a secret key."""
        parts = text.strip().split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(
                f"{where}: expected NAME:KEY:BUDGET (3 fields, budget a non-negative int), "
                f"got {len(parts)} field(s)"
            )
        return cls(parts[0], parts[1], int(parts[2]))


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Ledger:
    """Thread-safe accounting over one SQLite file (one connection, one lock): the HTTP
    service's `service.budget.Budget` (hold, commit with the response's record, release)."""

    def __init__(self, path: str):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a charge survives power loss too
        self._db.executescript(SCHEMA)
        for table, column, sql in (  # columns a ledger file written earlier lacks
            ("records", "client", "TEXT NOT NULL DEFAULT ''"),
            ("records", "tokens", "INTEGER NOT NULL DEFAULT 0"),
            ("users", "tokens_used", "INTEGER NOT NULL DEFAULT 0"),
        ):
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql}")
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def sync_users(self, users: list[UserSpec]) -> list[str]:
        """Make `users` the only ones whose keys work; return the names revoked.

        One transaction: every key is first replaced by a per-name placeholder that no key
        hashes to (so keys may move between names, or to a new name), then each listed user
        gets its key and budget; calls already used are kept. Revoked rows stay (usage and
        records survive; a name added back keeps what it used).
        """
        names = [u.name for u in users]
        digests = [key_digest(u.key) for u in users]
        if len(set(names)) != len(names) or len(set(digests)) != len(digests):
            raise ValueError("users must have distinct names and distinct keys")
        with self._lock, self._transaction():
            before = {r[0] for r in self._db.execute(f"SELECT name FROM users {_ACTIVE}")}
            self._db.execute(f"UPDATE users SET key_sha256 = '{_REVOKED}' || name")
            for u, digest in zip(users, digests, strict=True):
                self._db.execute(
                    "INSERT INTO users (name, key_sha256, budget) VALUES (?, ?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET key_sha256=excluded.key_sha256, "
                    "budget=excluded.budget",
                    (u.name, digest, u.budget),
                )
        return sorted(before - set(names))

    def authenticate(self, key: str | None) -> str | None:
        """The active user owning this key, or None (revoked rows hold no digest)."""
        if not key:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT name FROM users WHERE key_sha256 = ?", (key_digest(key),)
            ).fetchone()
        return None if row is None else row[0]

    def active(self, user: str) -> bool:
        """Whether `user` exists and is not revoked (checked between chunks of compute)."""
        with self._lock:
            row = self._db.execute(f"SELECT 1 FROM users {_ACTIVE} AND name = ?", (user,))
            return row.fetchone() is not None

    def revoke(self, user: str) -> bool:
        """Revoke `user` now (its key stops working; usage and records stay); False if no
        active user has that name. Effective in a running server: keys are looked up per
        request and queued work is dropped between chunks. The users file still lists the
        user until edited: a restart would restore the key."""
        with self._lock:
            cur = self._db.execute(
                f"UPDATE users SET key_sha256 = '{_REVOKED}' || name {_ACTIVE} AND name = ?",
                (user,),
            )
            return cur.rowcount > 0

    def budget(self, user: str, run_id: str | None = None) -> dict:
        with self._lock:
            budget, used, tokens = self._db.execute(
                "SELECT budget, used, tokens_used FROM users WHERE name = ?", (user,)
            ).fetchone()
            run_used = run_tokens = 0
            if run_id is not None:
                run_used, run_tokens = self._db.execute(
                    "SELECT COALESCE(SUM(calls), 0), COALESCE(SUM(tokens), 0) FROM records "
                    "WHERE user = ? AND run_id = ?",
                    (user, run_id),
                ).fetchone()
        return {
            "user": user,
            "budget": budget,
            "used": used,
            "remaining": budget - used,
            "run_used": int(run_used),
            "tokens_used": int(tokens),
            "run_tokens": int(run_tokens),
        }

    def _record(self, user: str, request_id: str, columns: str) -> tuple | None:
        return self._db.execute(
            f"SELECT {columns} FROM records WHERE user = ? AND request_id = ?", (user, request_id)
        ).fetchone()

    def _recorded(self, user: str, request_id: str, body_sha256: str) -> bytes | None:
        """The recorded response of this request id, or None; raise on a different body."""
        row = self._record(user, request_id, "body_sha256, response")
        if row is not None and row[0] != body_sha256:
            raise RequestIdConflictError(
                f"request id {request_id} was already used for a different request"
            )
        return None if row is None else row[1]

    def lookup(self, user: str, request_id: str, body_sha256: str) -> bytes | None:
        """The recorded response of this request id, or None; raise on a different body."""
        with self._lock:
            return self._recorded(user, request_id, body_sha256)

    def charged_client(self, user: str, request_id: str) -> str | None:
        """The client id recorded with this request id's charge ("" if none was sent)."""
        with self._lock:
            row = self._record(user, request_id, "client")
        return None if row is None else row[0]

    def hold(self, user: str, calls: int) -> None:
        """Reserve calls for a request about to be computed, or raise BudgetExhaustedError."""
        with self._lock:
            budget, used = self._db.execute(
                "SELECT budget, used FROM users WHERE name = ?", (user,)
            ).fetchone()
            held = self._held.get(user, 0)
            if used + held + calls > budget:
                raise exhausted_error(used, budget, held, calls)
            self._held[user] = held + calls

    def release(self, user: str, calls: int) -> None:
        with self._lock:
            self._held[user] = self._held.get(user, 0) - calls

    def commit(self, user, request_id, run_id, body_sha256, calls, response, client="", tokens=0):
        """`Budget.commit`, also recording the `tokens` of work scored beside the calls: charge
        a held request and record its response, atomically.

        Returns (response bytes, calls charged): a concurrent duplicate (same body) that
        committed first wins, and this one is answered with its bytes for 0 calls; another
        body under the same id raises RequestIdConflictError, charging nothing.
        """
        with self._lock, self._transaction():
            self._held[user] = self._held.get(user, 0) - calls
            if request_id is not None:
                recorded = self._recorded(user, request_id, body_sha256)
                if recorded is not None:  # a racing request claimed the id first
                    return recorded, 0
                self._db.execute(
                    "INSERT INTO records (user, request_id, run_id, body_sha256, calls, response, "
                    "created, client, tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (user, request_id, run_id, body_sha256, calls, response, time.time(),
                     client, tokens),
                )  # fmt: skip
            self._db.execute(
                "UPDATE users SET used = used + ?, tokens_used = tokens_used + ? WHERE name = ?",
                (calls, tokens, user),
            )
        return response, calls

    @contextlib.contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error (the caller holds the lock
        where others may write)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
