"""The provider as an HTTP service (FastAPI + uvicorn): score, budget, info, health.

    POST /v1/score    msgpack ScoreRequest -> msgpack {"logprobs": P x B x C x W, "calls"}
    GET  /v1/budget   the caller's budget, used and remaining calls (?run=ID: that run's)
    GET  /v1/info     public model facts (shapes, embedding std, accepted kinds)
    GET  /v1/health   liveness, no key needed

Every call but health needs `X-API-Key`. A score request goes: key (401) -> size limit
(413) -> decode and validate (400) -> replay of a recorded `X-Request-Id` (same bytes, 0
calls) -> budget hold (402) -> the batcher (shared compiled call) -> charge + record in
one SQLite transaction -> response. Nothing is charged unless the response is recorded.
Responses carry candidate log-probs only: never parameters, hidden states or full logits.
Run it with `cbp-jax serve` (cli.py) or `python -m cbp_jax.serve.app` (same options).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

import jax.numpy as jnp
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cbp_jax.serve.batcher import BatchConfig, Batcher, Job
from cbp_jax.serve.ledger import Ledger, RequestIdConflictError
from cbp_jax.serve.limits import PayloadTooLargeError, ServeLimits
from cbp_jax.serve.wire import MEDIA_TYPE, check_request_id, decode_request, encode_response
from cbp_jax.service.budget import BudgetExhaustedError
from cbp_jax.service.requests import MalformedRequestError, validate_request

DEFAULT_LIMITS, DEFAULT_BATCHING = ServeLimits(), BatchConfig()


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


async def _read_body(request: Request, limit: int) -> bytes:
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


class ScoreServer:
    """The service state: model + adapters (behind the batcher), ledger, limits."""

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
        exit_after_commits: int = 0,
    ):
        self.cfg = model.cfg
        self.adapters = {a.kind: a for a in adapters}
        self.ledger, self.limits = ledger, limits
        self.batcher = Batcher(model, self.adapters, adapter_params, batching)
        self._shapes = {k: a.payload_shape(model.cfg) for k, a in self.adapters.items()}
        self.info = {
            "model_name": model_name,
            "hidden_size": model.cfg.hidden_size,
            "num_layers": model.cfg.num_layers,
            "vocab_size": model.cfg.vocab_size,
            "embedding_std": float(jnp.std(model.params["embed"].astype(jnp.float32))),
            "accepted_kinds": sorted(self.adapters),
        }
        self._exit_after = exit_after_commits  # test hook: die after the n-th charge
        self._commits = 0

    def user(self, request: Request) -> str:
        user = self.ledger.authenticate(request.headers.get("x-api-key"))
        if user is None:
            raise HttpError(401, "missing or unknown API key (header X-API-Key)")
        return user

    def _job(self, req) -> Job:
        payload = None
        if req.payload is not None:
            axis = self.adapters[req.kind].payload_axis
            payload = np.moveaxis(np.asarray(req.payload, np.float32), axis, 0)
        ids = (req.tokens_BxS, req.mask_BxS, req.candidates_CxW)
        return Job(req.kind, payload, *(np.asarray(x, np.int32) for x in ids))

    async def score(self, request: Request) -> Response:
        user = self.user(request)  # an unknown key costs nothing and learns nothing
        with self.batcher.arriving():
            body = await _read_body(request, self.limits.max_body_bytes)
            rid = check_request_id(request.headers.get("x-request-id"))
            run_id = request.headers.get("x-run-id", "")[:128]
            req = decode_request(body, self.limits.max_body_bytes)
            self.limits.check(req)
            validate_request(req, vocab_size=self.cfg.vocab_size, payload_shape=self._shapes)
            digest = hashlib.sha256(body).hexdigest()
            if rid is not None:
                recorded = await asyncio.to_thread(self.ledger.lookup, user, rid, digest)
                if recorded is not None:
                    return _msgpack(recorded, charged=0, replayed=True)
            calls = req.calls
            self.ledger.hold(user, calls)
            try:
                future = self.batcher.submit(self._job(req))
            except BaseException:
                self.ledger.release(user, calls)
                raise
        try:
            logprobs = await asyncio.wrap_future(future)
        except BaseException:
            self.ledger.release(user, calls)
            raise
        out, charged = await asyncio.to_thread(
            self.ledger.commit, user, rid, run_id, digest, calls, encode_response(logprobs, calls)
        )
        self._commits += 1
        if self._exit_after and self._commits >= self._exit_after:
            os._exit(17)  # charged and recorded, response lost: what a crash looks like
        return _msgpack(out, charged=charged, replayed=charged == 0 and calls > 0)


def _msgpack(body: bytes, *, charged: int, replayed: bool) -> Response:
    headers = {"X-Charged": str(charged), "X-Replayed": "1" if replayed else "0"}
    return Response(content=body, media_type=MEDIA_TYPE, headers=headers)


def create_app(server: ScoreServer) -> FastAPI:
    app = FastAPI(title="cbp-jax scoring service", docs_url=None, redoc_url=None)
    errors = (
        (PayloadTooLargeError, 413),
        (MalformedRequestError, 400),
        (BudgetExhaustedError, 402),
        (RequestIdConflictError, 409),
    )

    def on_error(status):
        def handler(_request, exc):
            return JSONResponse({"error": str(exc)}, status_code=status)

        return handler

    for exc_type, status in errors:
        app.add_exception_handler(exc_type, on_error(status))
    app.add_exception_handler(
        HttpError, lambda _r, e: JSONResponse({"error": e.message}, status_code=e.status)
    )

    @app.get("/v1/health")
    def health():
        return {"status": "ok", "model": server.info["model_name"], "packs": server.batcher.packs}

    @app.get("/v1/info")
    def info(request: Request):
        server.user(request)
        return server.info

    @app.get("/v1/budget")
    def budget(request: Request, run: str | None = None):
        return server.ledger.budget(server.user(request), run)

    @app.post("/v1/score")
    async def score(request: Request):
        return await server.score(request)

    return app


def serve(server: ScoreServer, host: str = "127.0.0.1", port: int = 8321) -> None:
    import uvicorn

    print(f"cbp-jax serve: {server.info['model_name']} on http://{host}:{port}", flush=True)
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning", workers=1)


def main(argv=None) -> None:
    from cbp_jax.cli import main as cli_main

    cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
