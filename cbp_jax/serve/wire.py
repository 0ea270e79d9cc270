"""Wire format of the scoring service: msgpack maps with arrays as raw little-endian bytes.

An array travels as {"dtype": "<f4", "shape": [P, R], "data": <bytes>} (no JSON float
lists): a 20 x 500 float32 population is 40 kB on the wire. A score request body is
{"kind", "payload", "tokens", "mask", "candidates"}; a response body is
{"logprobs": P x B x C x W float32, "calls": int, "examples": int, "tokens": int}
(calls = P; examples and tokens = the work scored). Decoding never trusts the sender:
unknown dtypes, shapes that disagree with the byte count (sizes are multiplied as Python
ints, so a shape like [2**32, 2**32] cannot wrap around; each axis and the product of the
non-zero axes are bounded before any reshape, so an empty array with a huge axis such as
[2**64 - 1, 0] is refused too), oversized containers and missing fields raise
`MalformedRequestError` naming the field (the server answers 400, never 500).

`request_id` derives the idempotency key of a request from its content (see client.py).
"""

from __future__ import annotations

import hashlib
import math
import re

import msgpack
import numpy as np

from cbp_jax.contract import MalformedRequestError, ScoreRequest

# dtypes accepted on the wire: ids as int32/int64, payloads as float16/32/64.
WIRE_DTYPES = ("<i4", "<i8", "<f2", "<f4", "<f8")
MAX_NDIM = 6
MAX_AXIS = 1 << 24  # no field of a request or response has a longer axis
MAX_EXTENT = 1 << 40  # product of the non-zero axes: what numpy can index, with room
REQUEST_FIELDS = ("kind", "payload", "tokens", "mask", "candidates")
MEDIA_TYPE = "application/msgpack"
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"  # X-Request-Id and X-Client-Id


def encode_array(x) -> dict:
    a = np.asarray(x)
    dtype = a.dtype.newbyteorder("<")
    if dtype.str not in WIRE_DTYPES:
        raise ValueError(f"dtype {a.dtype} cannot be sent; use one of {WIRE_DTYPES}")
    a = np.ascontiguousarray(a, dtype=dtype)
    return {"dtype": dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def decode_array(obj, name: str) -> np.ndarray:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise MalformedRequestError(f"{name}: expected an array map {{dtype, shape, data}}")
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if dtype not in WIRE_DTYPES:
        raise MalformedRequestError(f"{name}: dtype {dtype!r} not accepted; use {WIRE_DTYPES}")
    if (
        not isinstance(shape, list | tuple)
        or len(shape) > MAX_NDIM
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise MalformedRequestError(f"{name}: shape must be <= {MAX_NDIM} non-negative ints")
    if not isinstance(data, bytes):
        raise MalformedRequestError(f"{name}: data must be raw bytes")
    extent = math.prod(max(n, 1) for n in shape)  # an empty array's other axes count too
    if max(shape, default=0) > MAX_AXIS or extent > MAX_EXTENT:
        raise MalformedRequestError(
            f"{name}: shape {list(shape)} has an axis over {MAX_AXIS} or more than "
            f"{MAX_EXTENT} cells counting empty axes as 1"
        )
    want = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no int64 wrap-around
    if len(data) != want:
        raise MalformedRequestError(
            f"{name}: {len(data)} data bytes do not match shape {list(shape)} of {dtype} "
            f"({want} bytes)"
        )
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    except ValueError as e:  # bounded above; kept so that no shape can become a 500
        raise MalformedRequestError(f"{name}: shape {list(shape)} not accepted: {e}") from e


def _unpack(body: bytes, max_bytes: int) -> dict:
    try:
        obj = msgpack.unpackb(
            body,
            raw=False,
            max_bin_len=max_bytes,
            max_str_len=256,
            max_array_len=64,
            max_map_len=16,
            strict_map_key=True,
        )
    except Exception as e:  # msgpack raises several unrelated types
        raise MalformedRequestError(f"body is not valid msgpack: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise MalformedRequestError("body must be a msgpack map")
    return obj


def _arrays(req: ScoreRequest) -> tuple:
    return req.payload, req.tokens_BxS, req.mask_BxS, req.candidates_CxW


def encode_request(req: ScoreRequest) -> bytes:
    arrays = {
        f: None if x is None else encode_array(x)
        for f, x in zip(REQUEST_FIELDS[1:], _arrays(req), strict=True)
    }
    return msgpack.packb({"kind": req.kind, **arrays}, use_bin_type=True)


def decode_request(body: bytes, max_bytes: int = 1 << 26) -> ScoreRequest:
    obj = _unpack(body, max_bytes)
    missing = [f for f in REQUEST_FIELDS if f not in obj]
    extra = sorted(set(obj) - set(REQUEST_FIELDS))
    if missing or extra:
        raise MalformedRequestError(f"request fields: missing {missing}, unknown {extra}")
    if not isinstance(obj["kind"], str):
        raise MalformedRequestError("kind must be a string")
    payload = None if obj["payload"] is None else decode_array(obj["payload"], "payload")
    return ScoreRequest(
        obj["kind"], payload, *(decode_array(obj[f], f) for f in REQUEST_FIELDS[2:])
    )


def encode_response(logprobs_PxBxCxW, calls: int, examples=None, tokens=None) -> bytes:
    """examples / tokens: the work scored (P x B, P x real text tokens); omitted if None."""
    body = {"logprobs": encode_array(np.asarray(logprobs_PxBxCxW, np.float32)), "calls": calls}
    work = {"examples": examples, "tokens": tokens}
    body.update({k: int(v) for k, v in work.items() if v is not None})
    return msgpack.packb(body, use_bin_type=True)


def decode_response(body: bytes) -> dict:
    """{"logprobs": array, "calls": int, and "examples" / "tokens" when the server sent them}."""
    obj = _unpack(body, len(body))
    out = {"logprobs": decode_array(obj["logprobs"], "logprobs"), "calls": int(obj["calls"])}
    out.update({k: int(obj[k]) for k in ("examples", "tokens") if k in obj})
    return out


def check_request_id(rid: str | None, header: str = "X-Request-Id") -> str | None:
    """The id as sent, or None if absent; MalformedRequestError naming `header` otherwise."""
    if rid is not None and not re.match(ID_PATTERN, rid):
        raise MalformedRequestError(f"{header} must be 1-128 characters of [A-Za-z0-9._:-]")
    return rid


def request_id(run_id: str, scope: str, req: ScoreRequest) -> str:
    """sha256 of (run id, scope, kind, every array's dtype, shape and bytes), 32 hex chars."""
    h = hashlib.sha256(f"{run_id}\x00{scope}\x00{req.kind}".encode())
    for x in _arrays(req):
        if x is None:
            h.update(b"\x00none")
            continue
        a = np.ascontiguousarray(x)
        h.update(f"\x00{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:32]
