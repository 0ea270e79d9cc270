"""The provider as a network service: HTTP server, wire format, accounting and client.

- `wire`: msgpack messages with raw little-endian array bytes.
- `limits`: per-request bounds (bytes, population, batch, sequence, prompt, work).
- `ledger`: API keys, budgets and recorded responses in SQLite (WAL), idempotent charging.
- `batcher`: concurrent requests packed into one compiled scoring call per shape bucket.
- `app`: the FastAPI app (`/v1/score`, `/v1/budget`, `/v1/info`, `/v1/health`).
- `launch`: builds a server from `cbp-jax serve` options (and the tiny test model).
- `client`: `RemoteService`, the engine's scoring interface over HTTP (jittable oracle).
"""
