"""OpenAPI description of `POST /v1/score`, whose body FastAPI cannot infer (raw msgpack).

Published at /openapi.json, so clients and fuzzers (the suite runs schemathesis over it)
know the body media type, the headers and every status the endpoint may answer.
"""

from __future__ import annotations

_ERROR = {"content": {"application/json": {"schema": {"type": "object"}}}}
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
    "431": "more than 64 header fields or 16 KiB of headers",
    "503": "not scored within the request timeout, or the server's queue is full "
    "(Retry-After; nothing charged)",
}

SCORE_OPENAPI = {
    "parameters": [
        {"name": "X-API-Key", "in": "header", "required": True, "schema": {"type": "string"}},
        {
            "name": "X-Request-Id",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        },
        {"name": "X-Run-Id", "in": "header", "required": False, "schema": {"type": "string"}},
        {
            "name": "X-Client-Id",
            "in": "header",
            "required": False,
            "description": "the sending client object; a replay answers X-Replay-Own: 1 when "
            "the recorded charge came from the same client id",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
    },
    "responses": {
        "200": {
            "description": "msgpack {logprobs: P x B x C x W float32, calls, examples, tokens}",
            "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
        },
        **{code: {"description": text, **_ERROR} for code, text in _STATUSES.items()},
    },
}
