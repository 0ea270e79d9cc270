"""The provider as a network service: HTTP server, wire format, accounting and client.

One API call = one candidate prompt scored on one batch (a request of population P costs P
calls, as in process); the ledger records the work (tokens: P x B x S after padding) beside
the calls, and `limits` bound what one request may ask (413 past a cap; the client splits).

Server: `app` (FastAPI: /v1/score, /v1/budget, /v1/info, /v1/health; its docstring follows a
request through), `answers` (prices, errors, OpenAPI schema, header limits), `limits`
(per-request bounds, timeouts, failed-key throttle, bounded queues), `waiting` (body,
scores, fair queue, retries in flight), `ledger` (keys, budgets, records in SQLite), `batcher` and
`tiles` (fixed-shape chunks, round robin over users), `launch` (`cbp-jax serve`).
Both ends: `wire` (msgpack with raw array bytes). User side: `client` (`RemoteService`,
a jittable oracle over HTTP) and `split` (work over the caps as several requests).
"""
