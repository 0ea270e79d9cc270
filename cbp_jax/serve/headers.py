"""HTTP-level limits of the scoring service: Content-Type (415), header count and size (431).

- A score body must be `application/msgpack` (parameters such as `; charset` allowed);
  anything else is answered 415 before the body is read.
- At most `MAX_HEADERS` header fields (431): a request with thousands of headers is refused
  by `HeaderLimit`, an ASGI middleware, before any route runs.
- At most `MAX_HEADER_BYTES` of request line and headers: h11 stops buffering there; uvicorn
  answers that with 400 ("Invalid HTTP request received.") and an 8 MiB header used to
  reset the connection. `LimitedH11Protocol` answers it 431, as RFC 6585 asks, then
  half-closes and discards what the client still sends (up to `DRAIN_BYTES`, for at most
  `DRAIN_S`) so that closing does not reset the connection before the answer is read.

`uvicorn_options()` gives what `uvicorn.run` / `uvicorn.Config` need for both.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 << 10
TOO_LARGE = 431
DRAIN_BYTES, DRAIN_S = 64 << 20, 10.0


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


def is_msgpack(content_type: str | None) -> bool:
    """Whether a Content-Type header names the score body's media type."""
    return (content_type or "").split(";")[0].strip().lower() == "application/msgpack"
