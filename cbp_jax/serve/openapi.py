"""OpenAPI description of `POST /v1/score`, whose body FastAPI cannot infer (raw msgpack).

Published at /openapi.json, so clients and fuzzers (the suite runs schemathesis over it)
know the body media type, its structure as a msgpack object (`SCORE_BODY`: arrays as
{dtype, shape, data}), the headers and every status the endpoint may answer.
"""

from __future__ import annotations

_ERROR = {"content": {"application/json": {"schema": {"type": "object"}}}}


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


_IDS, _FLOATS = ["<i4", "<i8"], ["<f2", "<f4", "<f8"]
# The msgpack body as an object: what a fuzzer needs to tell valid bodies from invalid ones
# (the suite registers a msgpack strategy for it: tests/test_serve_fuzz.py).
SCORE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "payload", "tokens", "mask", "candidates"],
    "properties": {
        "kind": {"enum": ["none", "prompt", "deep_prompt", "task_vector"]},
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
        "content": {"application/msgpack": {"schema": SCORE_BODY}},
    },
    "responses": {
        "200": {
            "description": "msgpack {logprobs: P x B x C x W float32, calls, examples, tokens}",
            "content": {"application/msgpack": {"schema": {"type": "string", "format": "binary"}}},
        },
        **{code: {"description": text, **_ERROR} for code, text in _STATUSES.items()},
    },
}
