"""Waiting on the network side of a score request: its body, then its scores.

- `read_body`: the body, refused (413) past the size limit, also when its Content-Length
  lies; the caller bounds the time (408).
- `wait_for_job`: the batcher's answer, bounded by the job's deadline (TimeoutError) and
  checking every `POLL_S` whether the client went away (ClientGoneError). On any way out
  but an answer, the job is cancelled: the worker stops at its next chunk, so abandoned
  work holds it for at most one chunk and is never charged.
"""

from __future__ import annotations

import asyncio
import time

from starlette.requests import Request

from cbp_jax.serve.limits import PayloadTooLargeError

POLL_S = 0.5  # how often a waiting request checks whether its client went away


class ClientGoneError(Exception):
    """The client disconnected while its request was queued or computing."""


async def read_body(request: Request, limit: int) -> bytes:
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


async def wait_for_job(job, future, gone=None):
    """The result of `future` (the batcher's, for `job`); `gone`: async () -> bool."""
    waiting = asyncio.wrap_future(future)
    try:
        while not waiting.done():
            left = job.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            await asyncio.wait({waiting}, timeout=min(left, POLL_S))
            if not waiting.done() and gone is not None and await gone():
                raise ClientGoneError("the client went away; nothing was charged")
        return waiting.result()
    finally:
        job.cancel.set()  # if still queued or computing, the worker stops at its next chunk
        waiting.cancel()
