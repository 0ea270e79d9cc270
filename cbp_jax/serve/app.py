"""The provider as an HTTP service (FastAPI + uvicorn): score, budget, info, health.

    POST /v1/score    msgpack ScoreRequest -> msgpack {"logprobs": P x B x C x W, "calls",
                      "examples", "tokens"}
    GET  /v1/budget   the caller's budget, used and remaining calls, tokens scored
                      (?run=ID: that run's calls and tokens)
    GET  /v1/info     public model facts, the call unit, both prices and the limits
    GET  /v1/health   liveness, no key needed

Every call but health needs `X-API-Key`. A score request goes: key (a wrong one: 401, or
429 with Retry-After past the failed-key throttle; a correct key is never throttled) ->
Content-Type (415) -> size (413) -> body within the read timeout (408) -> decode and the
provider core's checks (service/core.py, as in process; 400) -> replay of a recorded
`X-Request-Id` (same bytes, 0 calls; a retry of an id in flight waits for that attempt) ->
load shedding (429 / 503 with Retry-After) -> budget hold (402) -> the fair scheduler and
compiled chunks (503 past the request timeout) -> finite scores (400) -> charge + record in
one SQLite transaction (409 if a racing request claimed the id for another body). Nothing
is charged unless the response is recorded, and responses carry candidate log-probs only.
Work is abandoned between chunks (nothing charged) when the request passes its deadline,
its client goes away or its user is revoked (`cbp-jax serve keys revoke NAME`, no
restart); at shutdown, requests still in flight after 5 s are cancelled and so abandoned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cbp_jax.contract import HTTP_STATUS, CBPRelease
from cbp_jax.serve.answers import (
    CALL_UNIT,
    PRICES,
    SCORE_OPENAPI,
    HeaderLimit,
    HttpError,
    is_msgpack,
    msgpack_answer,
    uvicorn_options,
)
from cbp_jax.serve.batcher import AbandonedError, BatchConfig, Batcher, Job, padded_tokens
from cbp_jax.serve.ledger import Ledger
from cbp_jax.serve.limits import (
    AuthThrottle,
    GuardConfig,
    LoadShedder,
    PayloadTooLargeError,
    ServeLimits,
)
from cbp_jax.serve.waiting import InFlight, read_body, wait_for_job
from cbp_jax.serve.wire import MEDIA_TYPE, check_request_id, decode_request, encode_response
from cbp_jax.service.core import ProviderCore

DEFAULT_LIMITS, DEFAULT_BATCHING, DEFAULT_GUARD = ServeLimits(), BatchConfig(), GuardConfig()


@dataclasses.dataclass(frozen=True)
class Attempt:
    """What the ledger records with a charge: request id, run id, body hash, client id."""

    rid: str | None
    run_id: str
    digest: str
    client: str
    gone: object = None  # async () -> bool: the client went away


class ScoreServer:
    """The service state: the provider core (public info, checks, prices; core.py, shared
    with the in-process service), the batcher, the ledger (a `service.budget.Budget`)."""

    def __init__(
        self,
        model,
        adapters,
        adapter_params,
        ledger: Ledger,
        *,
        model_name: str,
        limits: ServeLimits = DEFAULT_LIMITS,
        batching: BatchConfig = DEFAULT_BATCHING,
        guard: GuardConfig = DEFAULT_GUARD,
        release: CBPRelease | None = None,
    ):
        self.release = release  # the served generator's r, z0 and names, published in /v1/info
        self.core = ProviderCore(
            model, adapters, adapter_params, model_name=model_name, limits=limits
        )
        self.adapters = self.core.adapters
        self.ledger, self.limits = ledger, limits
        self.batcher = Batcher(model, self.adapters, adapter_params, batching)
        self._public = None
        self.guard, self.throttle = guard, AuthThrottle(guard)
        self.shedder = LoadShedder(guard)  # bounded queues: 429 / 503 with Retry-After
        self.commits = 0  # responses charged and recorded
        self.inflight = InFlight()  # request ids being computed; their retries wait

    def user(self, request: Request) -> str:
        """The key's user; a correct key is never throttled (checked first)."""
        key = request.headers.get("x-api-key")
        user = self.ledger.authenticate(key)
        if user is not None:
            return user
        address = request.client.host if request.client else "?"
        wait = self.throttle.retry_after(address, key)
        if wait > 0:
            raise HttpError(429, "too many failed API keys from this address or with this "
                            "key prefix; retry later", retry_after=wait)  # fmt: skip
        self.throttle.failed(address, key)
        raise HttpError(401, "missing or unknown API key (header X-API-Key)")

    @property
    def public(self) -> dict:
        """/v1/info: the core's public info, the call unit and this server's limits."""
        if self._public is None:
            public = {**self.core.public_dict(), "call_unit": CALL_UNIT, "prices": PRICES}
            self._public = {**public, "limits": self.limits.public()}
            if self.release is not None:
                self._public["cbp_release"] = self.release.as_json()
        return self._public

    def _job(self, req, user: str) -> Job:
        """The batcher's job for an admitted request (population first, float32)."""
        payload = None
        if req.payload is not None:
            axis = self.adapters[req.kind].payload_axis
            payload = np.moveaxis(np.asarray(req.payload, np.float32), axis, 0)
        ids = (req.tokens_BxS, req.mask_BxS, req.candidates_CxW)
        return Job(
            req.kind, payload, *(np.asarray(x, np.int32) for x in ids), user=user,
            deadline=time.monotonic() + self.guard.request_timeout_s,
            still_wanted=lambda: self.ledger.active(user),
        )  # fmt: skip

    def committed(self) -> None:
        """Called after each response is charged and recorded (before it is sent)."""
        self.commits += 1

    async def _body(self, request: Request) -> bytes:
        try:
            return await asyncio.wait_for(
                read_body(request, self.limits.max_body_bytes), self.guard.read_timeout_s
            )
        except TimeoutError:
            raise HttpError(408, f"request body not received within "
                            f"{self.guard.read_timeout_s:g} s") from None  # fmt: skip

    async def _scores(self, job: Job, future, user: str, gone) -> np.ndarray:
        """The job's checked scores (`waiting.wait_for_job`: past its deadline or with its
        client gone, the worker stops within one chunk); HttpError on abandoned work."""
        try:
            logprobs = self.core.check_scores(await wait_for_job(job, future, gone))
        except AbandonedError:
            if not self.ledger.active(user):
                raise HttpError(401, "API key revoked; nothing was charged") from None
            raise HttpError(503, "abandoned; nothing was charged", retry_after=1) from None
        except TimeoutError:
            limit = self.guard.request_timeout_s
            raise HttpError(503, f"not scored within {limit:g} s; nothing was charged, "
                            "retry later", retry_after=1) from None  # fmt: skip
        return logprobs

    async def score(self, request: Request) -> Response:
        user = self.user(request)  # an unknown key costs nothing and learns nothing
        if not is_msgpack(request.headers.get("content-type")):
            raise HttpError(415, f"Content-Type must be {MEDIA_TYPE}")
        with self.batcher.arriving():
            body = await self._body(request)
            rid = check_request_id(request.headers.get("x-request-id"))
            client = check_request_id(request.headers.get("x-client-id"), "X-Client-Id") or ""
            run_id = request.headers.get("x-run-id", "")[:128]
            req = decode_request(body, self.limits.max_body_bytes)
            calls = self.core.admit(req)  # limits, validation, finite payload; the price
            job = self._job(req, user)
            digest = hashlib.sha256(body).hexdigest()
        at = Attempt(rid, run_id, digest, client, request.is_disconnected)
        if rid is None:
            return await self._compute(req, job, user, calls, at)
        async with self.inflight.claim(user, rid, digest, self.guard.request_timeout_s):
            recorded = await asyncio.to_thread(self.ledger.lookup, user, rid, digest)
            if recorded is None:  # not yet answered: compute it, its id claimed meanwhile
                return await self._compute(req, job, user, calls, at)
            own = await self._charged_to(user, rid, client)
            return msgpack_answer(recorded, charged=0, replayed=True, own=own)

    async def _compute(self, req, job: Job, user: str, calls: int, at: Attempt) -> Response:
        """Shed it if the queues are full (429 / 503 with Retry-After), else hold the price,
        score, charge and record (nothing is charged on any failure)."""
        self.shedder.admit(user)
        start, seconds = time.monotonic(), None
        try:
            self.ledger.hold(user, calls)
            try:
                logprobs = await self._scores(job, self.batcher.submit(job), user, at.gone)
            except BaseException:
                self.ledger.release(user, calls)
                raise
            response = encode_response(logprobs, calls, req.examples, req.tokens)
            tokens = padded_tokens(job.rows, *job.tokens.shape)
            out, charged = await asyncio.to_thread(
                self.ledger.commit, user, at.rid, at.run_id, at.digest, calls, response,
                at.client, tokens,
            )  # fmt: skip
            self.committed()
            seconds = time.monotonic() - start
        finally:
            self.shedder.done(user, seconds)
        replayed = charged == 0 and calls > 0  # a racing attempt of this id committed first
        own = replayed and await self._charged_to(user, at.rid, at.client)
        return msgpack_answer(out, charged=charged, replayed=replayed, own=own)

    async def _charged_to(self, user: str, rid: str, client: str) -> bool:
        """Whether this request id's recorded charge came from the same client id."""
        recorded = await asyncio.to_thread(self.ledger.charged_client, user, rid)
        return bool(client) and recorded == client


def create_app(server: ScoreServer) -> FastAPI:
    app = FastAPI(title="cbp-jax scoring service", docs_url=None, redoc_url=None)
    app.add_middleware(HeaderLimit)  # 431 past MAX_HEADERS header fields
    errors = ((PayloadTooLargeError, 413), *HTTP_STATUS.items())  # most specific class wins
    # Anything else is a server fault: a 500 that names no internals (no traceback).
    app.add_exception_handler(
        Exception, lambda _r, e: JSONResponse({"error": "internal error"}, status_code=500)
    )

    def answer(_request, exc):
        if isinstance(exc, HttpError):
            return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
        status = next(status for exc_type, status in errors if isinstance(exc, exc_type))
        return JSONResponse({"error": str(exc)}, status_code=status)

    for exc_type in (HttpError, *dict(errors)):
        app.add_exception_handler(exc_type, answer)

    @app.get("/v1/health")
    def health():
        b = server.batcher
        return {"status": "ok", "model": server.core.name, "packs": b.packs,
                "compiles": b.compiles, "commits": server.commits}  # fmt: skip

    @app.get("/v1/info")
    def info(request: Request):
        server.user(request)
        return server.public

    @app.get("/v1/budget")
    def budget(request: Request, run: str | None = None):
        return server.ledger.budget(server.user(request), run)

    @app.post("/v1/score", openapi_extra=SCORE_OPENAPI)
    async def score(request: Request):
        return await server.score(request)

    return app


def serve(server: ScoreServer, host: str = "127.0.0.1", port: int = 8321) -> None:
    import uvicorn

    print(f"cbp-jax serve: {server.core.name} on http://{host}:{port}", flush=True)
    uvicorn.run(
        create_app(server), host=host, port=port, log_level="warning", workers=1,
        timeout_keep_alive=5, limit_concurrency=256, timeout_graceful_shutdown=5,
        **uvicorn_options(),
    )  # fmt: skip
