"""Load of the scoring service as a paid API (issue 43): latency under floods, work served,
compilations and memory over many shapes. One run, one machine, loopback.

1. A light client (P=2, B=4, S=16 requests, one after another): p50/p99 alone.
2. The same (for at least --flood-s seconds) while 3 heavy clients flood (P=16, B=16,
   S=64, back to back; shed requests are retried after Retry-After by the client
   library): p50/p99, requests shed.
3. The same while one maximum-size request runs (work = max_work_tokens): p50/p99 against
   one chunk's time (its time over its chunks; compile included).
4. Tokens/s served in phase 2 (the ledger's tokens_used: P x B x S after padding).
5. 200 distinct request shapes: compilations (/v1/health) and server resident memory
   (VmRSS) before and after, and after a second pass over the same shapes.
The tiles of phases 2 and 3 are compiled before timing (compilation is phase 5's subject).
Run: `.venv/bin/python experiments/service_paid_load.py` (prints a markdown
section; experiments/results/service_load.md holds the recorded one).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import threading
import time

import numpy as np
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import USERS, Server, request  # noqa: E402  (the load test's server, requests)

from cbp_jax.serve.batcher import chunks_of, tile_shapes  # noqa: E402
from cbp_jax.serve.client import RemoteService, RetryPolicy  # noqa: E402
from cbp_jax.serve.limits import ServeLimits  # noqa: E402

LIGHT, HEAVY = (2, 4, 16), (16, 16, 64)
PATIENT = RetryPolicy(timeout_s=600, deadline_s=1200)


def service(url: str, user: str, run: str) -> RemoteService:
    return RemoteService(url, f"{user}-secret-key", run_id=run, retry=PATIENT)


def light(url: str, n: int, seed: int, min_s: float = 0.0, make=None, done=None) -> list[float]:
    """n light requests one after another (more until min_s seconds have passed; given the
    event `done`, until it is set instead); make(rng): a request (default: LIGHT)."""
    svc, rng, out = service(url, "user0", f"light-{seed}"), np.random.default_rng(seed), []
    make, end = make or (lambda rng: request(rng, *LIGHT)), time.perf_counter() + min_s
    while (not done.is_set()) if done else (len(out) < n or time.perf_counter() < end):
        t = time.perf_counter()
        svc.score(make(rng))
        out.append(time.perf_counter() - t)
    return out


def flood(url: str, user: str, stop: threading.Event, shed: list) -> int:
    svc, rng, done = service(url, user, f"flood-{user}"), np.random.default_rng(hash(user) % 99), 0
    session = svc._session()
    hook = session.hooks.setdefault("response", [])
    hook.append(
        lambda r, *a, **k: shed.append(r.status_code) if r.status_code in (429, 503) else None
    )
    while not stop.is_set():
        svc.score(request(rng, *HEAVY))
        done += 1
    return done


def pct(xs: list[float], q: float) -> float:
    return 1000 * float(np.percentile(xs, q))


def tokens_used(url: str, users) -> int:
    return sum(service(url, u, "x").budget()["tokens_used"] for u in users)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--light", type=int, default=40, help="light requests per phase")
    ap.add_argument("--shapes", type=int, default=200)
    ap.add_argument("--flood-s", type=float, default=20.0, help="heavy flood phase at least")
    ap.add_argument("--max-work", type=int, default=ServeLimits().max_work_tokens,
                    help="work of the big request (default: the server's cap)")  # fmt: skip
    args = ap.parse_args()
    with Server("tiny", []) as srv:
        cap = args.max_work
        p, b, s = 32, 64, max(8, cap // (32 * 64))  # one maximum-size request: P x B x S = the cap
        warm = service(srv.url, "user7", "warm")  # compile the timed phases' tiles first
        for shape in (HEAVY, (1, b, s)):  # (1, b, s): the maximum-size request's tile
            warm.score(request(np.random.default_rng(0), *shape))
        light(srv.url, 5, 99)  # warm the light shape
        alone = light(srv.url, args.light, 0)
        heavy_users, stop, shed = USERS[1:4], threading.Event(), []
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            before, t0 = tokens_used(srv.url, heavy_users), time.perf_counter()
            jobs = [pool.submit(flood, srv.url, u, stop, shed) for u in heavy_users]
            flooded = light(srv.url, args.light, 1, min_s=args.flood_s)
            stop.set()
            heavy_done = sum(j.result() for j in jobs)
            seconds = time.perf_counter() - t0
            served = tokens_used(srv.url, heavy_users) - before
        big_rng = np.random.default_rng(5)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            t = time.perf_counter()
            big = pool.submit(service(srv.url, "user5", "big").score, request(big_rng, p, b, s))
            beside = light(srv.url, args.light // 2, 2)
            big.result()
            big_s = time.perf_counter() - t
        chunks = chunks_of(p, b, s)  # the worker's chunks for this request
        health = requests.get(srv.url + "/v1/health", timeout=600).json()
        rss0, compiles0 = srv.rss_mb(), health["compiles"]
        rng, svc = np.random.default_rng(7), service(srv.url, "user6", "shapes")
        after = []  # (compilations, VmRSS) after each pass over the same distinct shapes
        for _ in range(2):
            for i in range(args.shapes):
                svc.score(request(rng, 1 + i % 5, 1 + (i * 3) % 17, 4 + (i * 7) % 121))
            health = requests.get(srv.url + "/v1/health", timeout=600).json()
            after.append((health["compiles"], srv.rss_mb()))
        (compiles1, rss1), (compiles2, rss2) = after
    chunk_ms = 1000 * big_s / chunks
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "CPU")  # fmt: skip
    rows = [
        ("alone", alone),
        ("under a 3-client heavy flood (P=16, B=16, S=64)", flooded),
        (f"while one maximum-size request runs ({p}x{b}x{s} = {cap} tokens)", beside),
    ]
    table = "\n".join(
        f"| {name} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 99):.0f} |" for name, xs in rows
    )
    print(f"""## Paid API: latency under floods, work served, shapes (issue 43)

Command: `nice -n 15 .venv/bin/python experiments/service_paid_load.py` (tiny random test
model, default server: fixed tiles of 1024 tokens, one chunk per turn round robin over
users, queues 4 per user / 32 in all; flood phase >= {args.flood_s:g} s; tiles of phases 2-3
compiled before timing). Machine: {cpu}, 2 cores shared with other jobs.

| light client (P=2, B=4, S=16) | requests | p50 ms | p99 ms |
|---|---|---|---|
{table}

- Maximum-size request: {big_s:.1f} s in {chunks} chunks, one chunk about {chunk_ms:.0f} ms
  (its time over its chunks; the light requests' chunks interleaved in it are counted in);
  light p99 beside it: {pct(beside, 99) / chunk_ms:.2f} chunks.
- Heavy flood: {heavy_done} heavy requests in {seconds:.1f} s, {served} tokens scored:
  **{served / seconds:.0f} tokens/s** (P x B x S after padding); {len(shed)} answers shed
  (429/503 with Retry-After, retried by the client).
- {args.shapes} distinct request shapes: compilations {compiles0} -> {compiles1} (bound: the
  {len(tile_shapes(128))} tiles of S <= 128, `shape_buckets.tile_shapes`); server
  resident memory (VmRSS) {rss0:.0f} MB -> {rss1:.0f} MB; a second pass over the same
  shapes: compilations {compiles2}, VmRSS {rss2:.0f} MB.
""")


if __name__ == "__main__":
    main()
