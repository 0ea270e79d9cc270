"""What the scoring server answers with: its published prices, the HTTP error it raises (with
Retry-After when the client should come back), and the msgpack answer's charge headers."""

from __future__ import annotations

import math

from fastapi.responses import Response

from cbp_jax.serve.wire import MEDIA_TYPE

CALL_UNIT = "one call = one candidate prompt scored on one batch (a request costs P calls)"
PRICES = {
    "calls": "P per request: one candidate prompt scored on one batch (the papers' unit)",
    "tokens": "P x B x S per request after padding B to a power of two and S to a power of "
    "two >= 8: the work, recorded beside the calls (/v1/budget tokens_used)",
    "work_cap": "a request over limits.max_work_tokens (P x B x (S + prompt)) is refused 413 "
    "naming the cap; the client library splits it into several requests",
}


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
