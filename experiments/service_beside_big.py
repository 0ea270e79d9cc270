"""Light-client latency beside one maximum-size request, with more samples (issue 43).

Phase 3 of `service_paid_load.py` alone: the server's fixed tiles are compiled first (the
big request's tile and the light shape), then one maximum-size request (P x B x S = the
work cap) runs while a light client (P=2, B=4, S=16) sends requests one after another
for the WHOLE time the big request runs (not only the first `--first`), so the p99 is
not just the slowest of 20. One chunk's time = the big request's time over its chunks.
Also: the light client alone on the same server, before, as the reference.
Run: `nice -n 5 .venv/bin/python experiments/service_beside_big.py`.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import Server  # noqa: E402
from service_paid_load import LIGHT, light, pct, request, service  # noqa: E402

from cbp_jax.serve.batcher import chunks_of  # noqa: E402
from cbp_jax.serve.limits import ServeLimits  # noqa: E402


def light_until(url: str, done: threading.Event, seed: int) -> list[float]:
    svc, rng, out = service(url, "user0", f"light-{seed}"), np.random.default_rng(seed), []
    while not done.is_set():
        t = time.perf_counter()
        svc.score(request(rng, *LIGHT))
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    first, cap = 20, ServeLimits().max_work_tokens
    p, b, s = 32, 64, max(8, cap // (32 * 64))
    start = time.strftime("%H:%M", time.gmtime())
    srv = Server("tiny", [])
    try:
        service(srv.url, "user7", "warm").score(request(np.random.default_rng(0), 1, b, s))
        light(srv.url, 5, 99)
        alone = light(srv.url, 40, 0)
        done = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            t = time.perf_counter()
            big = pool.submit(service(srv.url, "user5", "big").score,
                              request(np.random.default_rng(5), p, b, s))  # fmt: skip
            lights = pool.submit(light_until, srv.url, done, 2)
            big.result()
            big_s = time.perf_counter() - t
            done.set()
            beside = lights.result()
    finally:
        srv.stop()
    chunks = chunks_of(p, b, s)
    chunk_ms = 1000 * big_s / chunks
    print(f"{start}-{time.strftime('%H:%M', time.gmtime())} UTC, load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"- light alone: {len(alone)} requests, p50 {pct(alone, 50):.0f} ms, "
          f"p99 {pct(alone, 99):.0f} ms")  # fmt: skip
    print(f"- maximum-size request {p}x{b}x{s}: {big_s:.1f} s in {chunks} chunks, "
          f"one chunk {chunk_ms:.0f} ms")  # fmt: skip
    for name, xs in ((f"first {first}", beside[:first]), ("all", beside)):
        print(f"- light beside it, {name}: {len(xs)} requests, p50 {pct(xs, 50):.0f} ms "
              f"({pct(xs, 50) / chunk_ms:.2f} chunks), p99 {pct(xs, 99):.0f} ms "
              f"({pct(xs, 99) / chunk_ms:.2f} chunks), max {1000 * max(xs):.0f} ms "
              f"({1000 * max(xs) / chunk_ms:.2f} chunks)")  # fmt: skip
    over = sum(1000 * x > 2 * chunk_ms for x in beside)
    print(f"- light requests over 2 chunks: {over} of {len(beside)}")


if __name__ == "__main__":
    main()
