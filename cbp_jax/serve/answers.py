"""What the scoring server answers, and the HTTP limits it answers before any route runs.

- Prices (`CALL_UNIT`, `PRICES`, published in /v1/info), `HttpError` (a status, with
  Retry-After when the client should come back) and `msgpack_answer` (the charge headers).
- `SCORE_OPENAPI`: the schema of `POST /v1/score`, whose raw msgpack body FastAPI cannot
  infer (`SCORE_BODY`: arrays as {dtype, shape, data}, as `wire` reads them); schemathesis
  fuzzes it (tests/test_serve_fuzz.py).
- Headers: more than `MAX_HEADERS` fields is 431 (`HeaderLimit`, ASGI middleware); more than
  `MAX_HEADER_BYTES` of request line and headers, where h11 stops buffering, is 431 too
  (`LimitedH11Protocol`; uvicorn answers 400), after which what the client still sends is
  discarded (up to `DRAIN_BYTES`, `DRAIN_S`) so that the close does not reset the connection
  before the answer is read. `uvicorn_options()` installs it.
"""

from __future__ import annotations

import math

import h11
from fastapi.responses import Response
from uvicorn.protocols.http.h11_impl import H11Protocol

from cbp_jax.contract import PAYLOAD_KINDS
from cbp_jax.serve.wire import ID_PATTERN, MEDIA_TYPE, REQUEST_FIELDS, WIRE_DTYPES

CALL_UNIT = "one call = one candidate prompt scored on one batch (a request costs P calls)"
PRICES = {
    "calls": "P per request: one candidate prompt scored on one batch (the papers' unit)",
    "tokens": "P x B x S per request after padding B to a power of two and S to a power of "
    "two >= 8: the work, recorded beside the calls (/v1/budget tokens_used)",
    "work_cap": "a request over limits.max_work_tokens (P x B x (S + prompt)) is refused 413 "
    "naming the cap; the client library splits it into several requests",
}
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 << 10
TOO_LARGE = 431
DRAIN_BYTES, DRAIN_S = 64 << 20, 10.0


class HttpError(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message = status, message
        self.headers = {} if retry_after is None else {"Retry-After": str(math.ceil(retry_after))}


def msgpack_answer(body: bytes, *, charged: int, replayed: bool, own: bool = False) -> Response:
    """The answer's headers: X-Charged (calls charged now), X-Replayed (answered from the
    record) and, on a replay, X-Replay-Own (the recorded charge came from the same X-Client-Id:
    an earlier attempt whose answer that client never got)."""
    headers = {"X-Charged": str(charged), "X-Replayed": "1" if replayed else "0"}
    if replayed:
        headers["X-Replay-Own"] = "1" if own else "0"
    return Response(content=body, media_type=MEDIA_TYPE, headers=headers)


def is_msgpack(content_type: str | None) -> bool:
    """Whether a Content-Type header names the score body's media type (parameters allowed)."""
    return (content_type or "").split(";")[0].strip().lower() == MEDIA_TYPE


def _array(dtypes: list[str], ndim: int | tuple[int, ...], description: str) -> dict:
    """An array on the wire: {dtype, shape, data} (raw little-endian bytes, wire.py)."""
    lo, hi = (ndim, ndim) if isinstance(ndim, int) else (min(ndim), max(ndim))
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 1 << 24},
             "minItems": lo, "maxItems": hi}  # fmt: skip
    return {
        "type": "object", "description": description, "additionalProperties": False,
        "required": ["dtype", "shape", "data"],
        "properties": {"dtype": {"enum": dtypes}, "shape": shape,
                       "data": {"type": "string", "format": "binary"}},
    }  # fmt: skip


_IDS, _FLOATS = ([d for d in WIRE_DTYPES if d[1] == k] for k in "if")
SCORE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": list(REQUEST_FIELDS),
    "properties": {
        "kind": {"enum": list(PAYLOAD_KINDS)},
        "payload": {"oneOf": [{"type": "null"}, _array(_FLOATS, (2, 3, 4),
                    "P x R (task_vector), P x T x D (prompt), L x P x T x D (deep_prompt)")]},
        "tokens": _array(_IDS, 2, "B x S token ids, left-padded"),
        "mask": _array(_IDS, 2, "B x S, 1 on real tokens"),
        "candidates": _array(_IDS, 2, "C x W answer word ids"),
    },
}  # fmt: skip
_STATUSES = {
    "400": "malformed request (decoding, shapes, limits, ids, non-finite payload or scores)",
    "401": "missing or unknown API key",
    "402": "API budget exhausted",
    "408": "request body not received within the read timeout",
    "409": "request id already used for a different body",
    "413": "request body too large",
    "415": "Content-Type is not application/msgpack",
    "429": "too many failed API keys from this address or key prefix, or too many of this "
    "user's requests queued (Retry-After)",
    "431": f"more than {MAX_HEADERS} header fields or {MAX_HEADER_BYTES >> 10} KiB of headers",
    "503": "not scored within the request timeout, or the server's queue is full "
    "(Retry-After; nothing charged)",
}
_ERROR = {"content": {"application/json": {"schema": {"type": "object"}}}}
_ID_HEADER = {
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": ID_PATTERN},
}
SCORE_OPENAPI = {
    "parameters": [
        {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Request-Id", **_ID_HEADER},
        {"name": "X-Run-Id", "in": "header", "required": False, "schema": {"type": "string"}},
        {
            "name": "X-Client-Id",
            **_ID_HEADER,
            "description": "the sending client object; a replay answers X-Replay-Own: 1 when "
            "the recorded charge came from the same client id",
        },
    ],
    "requestBody": {"required": True, "content": {MEDIA_TYPE: {"schema": SCORE_BODY}}},
    "responses": {
        "200": {
            "description": "msgpack {logprobs: P x B x C x W float32, calls, examples, tokens}",
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        **{code: {"description": text, **_ERROR} for code, text in _STATUSES.items()},
    },
}


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering an over-long header block 431 instead of 400."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._header_overflow = False
        next_event = self.conn.next_event

        def checked_next_event():
            try:
                return next_event()
            except h11.RemoteProtocolError as e:
                self._header_overflow = e.error_status_hint == TOO_LARGE
                raise

        self.conn.next_event = checked_next_event

    def send_400_response(self, msg: str) -> None:
        if not self._header_overflow:
            return super().send_400_response(msg)
        body = f"request headers exceed {MAX_HEADER_BYTES} bytes".encode()
        head = (
            f"HTTP/1.1 {TOO_LARGE} Request Header Fields Too Large\r\n"
            f"content-type: text/plain; charset=utf-8\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self._drained = 0
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is complete; keep reading, then close
            self.loop.call_later(DRAIN_S, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_drained", None) is None:
            return super().data_received(data)
        self._drained += len(data)  # the rest of an over-long header: discarded
        if self._drained > DRAIN_BYTES:
            self.transport.close()

    def eof_received(self):
        if getattr(self, "_drained", None) is None:
            return super().eof_received()
        self.transport.close()


class HeaderLimit:
    """ASGI middleware: more than `max_headers` header fields -> 431, nothing else runs."""

    def __init__(self, app, max_headers: int = MAX_HEADERS):
        self.app, self.max_headers = app, max_headers

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(scope["headers"]) > self.max_headers:
            body = f'{{"error": "more than {self.max_headers} header fields"}}'.encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": TOO_LARGE, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def uvicorn_options() -> dict:
    return {"http": LimitedH11Protocol, "h11_max_incomplete_event_size": MAX_HEADER_BYTES}
