"""The provider as a network service: HTTP server, wire format, accounting and client.

One API call = one candidate prompt scored on one batch (a request of population P costs
P calls, as in process); the work one request may ask is bounded by `limits` (413 past
the cap; the client splits such work), and the ledger records it beside the calls
(tokens: P x B x S after padding).

- `wire`: msgpack messages with raw little-endian array bytes (overflow-safe shapes).
- `limits`: per-request bounds (bytes, population, batch, sequence, prompt, work per call
  and per request), published in /v1/info.
- `ledger`: API keys, budgets and recorded responses in SQLite (WAL), idempotent charging;
  the users file decides who exists (removed users are revoked); `cbp-jax serve keys
  revoke NAME` revokes one in a running server.
- `fair`: one queue per user, least recently served first.
- `batcher`: requests computed in fixed-shape chunks (`shape_buckets.tile`: a bounded set
  of compiled programs), one chunk per turn round robin over users, an LRU of compiled
  calls, optional packing; abandoned between chunks when nobody waits.
- `tiles`: a request's work as chunks of one tile, and the compiled tile function.
- `guard`: read and request timeouts, the failed-authentication throttle (never a valid
  key), bounded queues (429 / 503 with Retry-After).
- `headers`: Content-Type (415), header count and size (431).
- `waiting`: the body (413) and the scores (deadline, client gone: work abandoned).
- `split` (user side): work over the server's caps sent as several requests.
- `inflight`: a retry of a request id in flight waits for that attempt's answer.
- `openapi`: the schema of `POST /v1/score` (its body is msgpack).
- `app`: the FastAPI app (`/v1/score`, `/v1/budget`, `/v1/info`, `/v1/health`).
- `launch`: builds a server from `cbp-jax serve` options.
- `client`: `RemoteService`, the engine's scoring interface over HTTP (jittable oracle).
"""
