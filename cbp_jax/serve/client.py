"""Remote scoring client: the engine's `contract.ScoringAPI` over HTTP.

`RemoteService(url, api_key, run_id=...)` offers what the in-process `ScoringService` does.
`oracle(kind)` is a jittable `RemoteOracle` whose call is a `jax.pure_callback` that POSTs
one batch as ONE request (its length buckets left-padded to the longest, the mask marking
the padding; the server re-buckets), so the engine's compiled `lax.scan` runs unchanged
over the network: one oracle call = one batch = P calls, as in process.

Retries: each attempt has a timeout; connection errors, timeouts, 429 and 5xx are retried
with exponential backoff, waiting at least the server's Retry-After, until
`RetryPolicy.deadline_s`, then `ServiceUnavailableError` (in a compiled loop, wrapped in a
JAX runtime error; the run's checkpoint resumes it). Other 4xx are raised as the contract's
errors (`contract.HTTP_STATUS`; 413 as MalformedRequestError). A request over the server's
work caps (/v1/info) is sent as several (`split`: population first), joined in order.

Request ids (idempotency keys): sha256(run_id, scope, request content), scope
"epoch:<calls reserved so far>" for oracle calls and "eager:<n-th call>" for `score`. The
engine reserves before every chunk and, on resume, re-reserves what its checkpoint records,
so a chunk replayed after a crash (of either side) sends the same ids and is answered from
the server's record, not charged again; hashing content, not counting calls, makes ids
independent of the order XLA runs callbacks in. Pass a stable `run_id` (e.g. the run
directory's name) for this across restarts (default: random per client); the server never
shares records between users.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import requests

from cbp_jax.checks import check_positive
from cbp_jax.contract import (
    HTTP_STATUS,
    BudgetExhaustedError,
    MalformedRequestError,
    PublicInfo,
    ScoreRequest,
    ScoreResponse,
    ServiceUnavailableError,
    check_buckets,
    payload_dims,
)
from cbp_jax.serve.split import join_scores, split_request
from cbp_jax.serve.wire import MEDIA_TYPE, decode_response, encode_request, request_id


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """timeout_s: per attempt; deadline_s: per call, all attempts; backoff doubles from
    backoff_s up to backoff_max_s."""

    timeout_s: float = 60.0
    deadline_s: float = 600.0
    backoff_s: float = 0.2
    backoff_max_s: float = 10.0

    def __post_init__(self):
        check_positive(self, number=True)
        if self.backoff_max_s < self.backoff_s:
            raise ValueError("RetryPolicy.backoff_max_s must be >= backoff_s")


_ERRORS = {status: error for error, status in HTTP_STATUS.items()} | {413: MalformedRequestError}


class RemoteService:
    """A scoring service on the other side of HTTP, for one API key and one run."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        run_id: str | None = None,
        tokenizer=None,
        retry: RetryPolicy = RetryPolicy(),
    ):
        self.url = url.rstrip("/")
        self.run_id = run_id or uuid.uuid4().hex
        self.retry = retry
        self._key, self._tokenizer = api_key, tokenizer
        self._local = threading.local()
        self._lock = threading.Lock()
        self._reserved = 0  # calls the engine has reserved: the epoch of oracle request ids
        self._eager = 0
        self._charged = 0
        self._counted: set[str] = set()  # request ids whose charge calls_used includes
        self._client_id = uuid.uuid4().hex  # tells this object's charged attempts apart
        self._info = None
        self._server_limits = None

    # ------------------------------------------------------------------ transport

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _http(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"X-API-Key": self._key, "X-Run-Id": self.run_id, **kw.pop("headers", {})}
        deadline = time.monotonic() + self.retry.deadline_s
        wait, last = self.retry.backoff_s, "no attempt"
        while True:
            try:
                resp = self._session().request(
                    method, self.url + path, headers=headers, timeout=self.retry.timeout_s, **kw
                )
                if resp.status_code < 400:
                    return resp
                message = _error_message(resp)
                if resp.status_code in _ERRORS:
                    raise _ERRORS[resp.status_code](f"{resp.status_code}: {message}")
                if resp.status_code != 429 and resp.status_code < 500:
                    raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {message}")
                last = f"HTTP {resp.status_code}: {message}"
                told = retry_after(resp)
            except (requests.ConnectionError, requests.Timeout) as e:
                last, told = f"{type(e).__name__}: {e}", 0.0
                self._local.session = requests.Session()  # drop a broken pooled connection
            pause = max(wait, told)  # the server's Retry-After, when it sent one
            if time.monotonic() + pause > deadline:
                raise ServiceUnavailableError(
                    f"{method} {self.url}{path}: no answer within {self.retry.deadline_s}s "
                    f"(last: {last})"
                )
            time.sleep(pause)
            wait = min(2 * wait, self.retry.backoff_max_s)

    def _limits(self) -> dict:
        """The server's per-request limits (/v1/info), fetched once."""
        if self._server_limits is None:
            self._server_limits = dict(self.server_info().get("limits", {}))
        return self._server_limits

    def _post_score(self, req: ScoreRequest, rid: str) -> tuple[np.ndarray, int, dict]:
        """(log-probs, calls charged, work fields): one request, or several when its work is
        over the server's caps (`split`; part ids derive from `rid`)."""
        limits = self._limits()
        if "max_work_tokens" not in limits:
            return self._post_one(req, rid)
        parts = split_request(req, limits["max_work_tokens"], limits["max_call_tokens"])
        if len(parts) == 1 and len(parts[0]) == 1:
            return self._post_one(req, rid)
        scores, charged, work = [], 0, {}
        for i, row in enumerate(parts):
            scores.append([])
            for j, part in enumerate(row):
                logprobs, c, body = self._post_one(part, f"{rid}.{i}.{j}")
                scores[-1].append(logprobs)
                charged += c
                work = {k: work.get(k, 0) + v for k, v in body.items()}
        return join_scores(scores), charged, work

    def _post_one(self, req: ScoreRequest, rid: str) -> tuple[np.ndarray, int, dict]:
        """(log-probs, calls charged to this request, the response's work fields)."""
        headers = {"Content-Type": MEDIA_TYPE, "X-Request-Id": rid, "X-Client-Id": self._client_id}
        resp = self._http("POST", "/v1/score", data=encode_request(req), headers=headers)
        body = decode_response(resp.content)
        logprobs = body.pop("logprobs")
        charged = int(resp.headers.get("X-Charged", "0"))
        if resp.headers.get("X-Replay-Own") == "1":
            charged = body["calls"]  # an earlier attempt of ours was charged; its answer was lost
        with self._lock:
            if rid not in self._counted:
                self._counted.add(rid)
                self._charged += charged
        want = (req.population, req.num_examples, *np.shape(req.candidates_CxW))
        if logprobs.shape != want:
            raise RuntimeError(f"server answered shape {logprobs.shape}, expected {want}")
        return np.asarray(logprobs, np.float32), charged, body

    # ------------------------------------------------------------------ service interface

    @property
    def calls_used(self) -> int:
        """Calls the server charged for this client object's requests, each request id once:
        a retry whose first attempt was charged but never answered counts that charge (the
        server says so with X-Replay-Own); replays of other processes' charges are free."""
        return self._charged

    @property
    def calls_remaining(self) -> int:
        """Calls this API key may still spend, as the server counts them (asks it)."""
        return int(self.budget()["remaining"])

    def budget(self) -> dict:
        """{"user", "budget", "used", "remaining", "run_used"} from the server."""
        return self._http("GET", "/v1/budget", params={"run": self.run_id}).json()

    def server_info(self) -> dict:
        """/v1/info as sent: the public model facts, the call unit and the server's limits."""
        return self._http("GET", "/v1/info").json()

    def public_info(self) -> PublicInfo:
        if self._info is None:
            info = self.server_info()
            fields = {f.name for f in dataclasses.fields(PublicInfo)} - {"tokenizer"}
            info = {k: tuple(v) if isinstance(v, list) else v for k, v in info.items()}
            info = {k: v for k, v in info.items() if k in fields}
            self._info = PublicInfo(**info, tokenizer=self._tokenizer)
        return self._info

    def score(self, request: ScoreRequest) -> ScoreResponse:
        with self._lock:
            scope, self._eager = f"eager:{self._eager}", self._eager + 1
        rid = request_id(self.run_id, scope, request)
        logprobs, charged, work = self._post_score(request, rid)
        known = {f.name for f in dataclasses.fields(ScoreResponse)} - {"calls"}  # examples, tokens
        return ScoreResponse(logprobs, charged, **{k: v for k, v in work.items() if k in known})

    def reserve(self, calls: int) -> None:
        """Check the remote budget covers `calls` more than this run has been charged.

        Charging itself happens on the server, per request; on resume the engine reserves
        the calls of its checkpoint, which the server has already charged to this run id.
        """
        if calls < 0:
            raise ValueError(f"cannot reserve a negative number of calls ({calls})")
        b = self.budget()
        need = self._reserved + calls - b["run_used"]
        if need > b["remaining"]:
            raise BudgetExhaustedError(
                f"API budget exhausted: {b['used']} of {b['budget']} calls used, "
                f"this run needs {need} more"
            )
        self._reserved += calls

    def oracle(self, kind: str) -> RemoteOracle:
        kinds = self.public_info().accepted_kinds
        if kind not in kinds:
            raise ValueError(f"this service does not accept {kind!r}; it accepts {list(kinds)}")
        return RemoteOracle(self, kind)

    def _oracle_call(self, kind, *arrays) -> np.ndarray:
        payload, rest = (None, arrays) if kind == "none" else (arrays[0], arrays[1:])
        req = ScoreRequest(kind, payload, *(np.asarray(x) for x in rest))
        return self._post_score(req, request_id(self.run_id, f"epoch:{self._reserved}", req))[0]


def retry_after(resp: requests.Response) -> float:
    """Seconds of a Retry-After header (delta-seconds form), 0 if absent or unreadable."""
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


def _error_message(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))
    except ValueError:
        return resp.text[:500]


@jax.tree_util.register_pytree_node_class
class RemoteOracle:
    """Jittable handle: (payload, buckets, candidates) -> P x (sum of B) x C x W log-probs
    in bucket order, computed by the server through `jax.pure_callback` as one request
    (P calls). It holds no arrays."""

    def __init__(self, client: RemoteService, kind: str):
        self._client, self.kind = client, kind

    def tree_flatten(self):
        return (), (self._client, self.kind)

    @classmethod
    def tree_unflatten(cls, static, _children):
        return cls(*static)

    def __call__(self, payload, buckets, candidates_CxW):
        buckets = check_buckets(buckets)
        width = max(t.shape[1] for t, _ in buckets)
        pads = [((0, 0), (width - t.shape[1], 0)) for t, _ in buckets]  # mask 0: padding
        tokens_BxS, mask_BxS = (
            jnp.concatenate([jnp.pad(pair[i], w) for pair, w in zip(buckets, pads, strict=True)])
            for i in (0, 1)
        )
        (p, _), (c, w) = payload_dims(self.kind, payload), candidates_CxW.shape
        out = jax.ShapeDtypeStruct((p, tokens_BxS.shape[0], c, w), jnp.float32)
        arrays = (tokens_BxS, mask_BxS, candidates_CxW)
        if payload is not None:
            arrays = (payload.astype(jnp.float32), *arrays)
        fn = functools.partial(self._client._oracle_call, self.kind)
        return jax.pure_callback(fn, out, *arrays, vmap_method="sequential")

    def __repr__(self):
        return f"RemoteOracle(kind={self.kind!r}, url={self._client.url!r})"
