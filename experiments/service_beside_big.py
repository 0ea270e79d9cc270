"""Light-client latency beside one maximum-size request, with more samples (issue 43).

Phase 3 of `service_paid_load.py` alone: the server's fixed tiles are compiled first (the
big request's tile and the light shape), then one maximum-size request (P x B x S = the
work cap) runs while a light client (P=2, B=4, S=16) sends requests one after another
for the WHOLE time the big request runs (not only the first `--first`), so the p99 is
not just the slowest of 20. One chunk's time = the big request's time over its chunks.
Also: the light client alone on the same server, before, as the reference.
Run: `nice -n 5 .venv/bin/python experiments/service_beside_big.py`.

`--model NAME` serves a registered model instead (`cbp-jax serve --model NAME`, soft
prompts of 8 tokens, the light client P=2, B=4, S=16). A maximum-size request then takes
far longer than a light phase needs (SmolLM2-135M on a 2-core CPU: about 1 s a chunk, 1024
chunks), so the light client runs for `--seconds` and the big request's client then goes
away (its timeout): the server abandons it, uncharged (checked in its user's budget). One
chunk's time is then the median of 5 one-chunk requests in the big request's tile, alone
(HTTP included: a few ms on a chunk of about a second).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import Server, request  # noqa: E402
from service_paid_load import LIGHT, light, pct, service  # noqa: E402

from cbp_jax.serve.batcher import chunks_of, tile_for  # noqa: E402
from cbp_jax.serve.client import RemoteService, RetryPolicy  # noqa: E402
from cbp_jax.serve.limits import ServeLimits  # noqa: E402


def pcts(xs: list[float], chunk_ms: float) -> str:
    return (f"p50 {pct(xs, 50):.0f} ms ({pct(xs, 50) / chunk_ms:.2f} chunks), p99 "
            f"{pct(xs, 99):.0f} ms ({pct(xs, 99) / chunk_ms:.2f} chunks), max "
            f"{1000 * max(xs):.0f} ms ({1000 * max(xs) / chunk_ms:.2f} chunks)")  # fmt: skip


def served_model(model: str, seconds: float) -> None:
    """The light client beside an abandoned maximum-size request on a registered model."""
    cap, t = ServeLimits().max_work_tokens, 8
    p, b, s = 32, 64, cap // (32 * 64) - t  # P x B x (S + T) = the cap
    start = time.strftime("%H:%M", time.gmtime())
    with Server(model, []) as srv:
        one = service(srv.url, "user7", "one-chunk")  # the big request's tile, 1 chunk
        make = functools.partial(request, kind="prompt", d=one.public_info().hidden_size, t=t)
        rng = np.random.default_rng(0)
        assert chunks_of(1, 2, s) == 1 and tile_for(1, 2, s) == tile_for(p, b, s)
        ones = []
        for _ in range(6):
            t0 = time.perf_counter()
            one.score(make(rng, 1, 2, s))
            ones.append(time.perf_counter() - t0)
        chunk_ms = 1000 * float(np.median(ones[1:]))  # the first compiles
        light_rows = lambda rng: make(rng, *LIGHT)  # noqa: E731
        light(srv.url, 5, 5, make=light_rows)  # compile the light tile
        alone = light(srv.url, 40, 40, make=light_rows)
        done = threading.Event()
        patient = RetryPolicy(timeout_s=seconds + 5, deadline_s=seconds + 6)
        big_svc = RemoteService(srv.url, "user5-secret-key", run_id="big", retry=patient)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            big = pool.submit(big_svc.score, make(np.random.default_rng(5), p, b, s))
            time.sleep(1.0)  # the big request is admitted and computing first
            lights = pool.submit(light, srv.url, 0, 2, make=light_rows, done=done)
            time.sleep(seconds)
            done.set()
            beside = lights.result()
            outcome = type(big.exception(timeout=600)).__name__
        time.sleep(2 * chunk_ms / 1000)
        charged = big_svc.budget()["used"]
    print(f"{start}-{time.strftime('%H:%M', time.gmtime())} UTC, model {model}, load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"- one chunk (tile {tile_for(p, b, s)}, 1 request alone, median of 5): "
          f"{chunk_ms:.0f} ms")  # fmt: skip
    print(f"- light alone ({LIGHT}, tile {tile_for(*LIGHT)}): {len(alone)} requests, "
          f"{pcts(alone, chunk_ms)}")  # fmt: skip
    print(f"- light beside the maximum-size request {p}x{b}x{s} (+{t} prompt) for {seconds:g} "
          f"s: {len(beside)} requests, {pcts(beside, chunk_ms)}")  # fmt: skip
    over = sum(1000 * x > 2 * chunk_ms for x in beside)
    print(f"- light requests over 2 chunks: {over} of {len(beside)}")
    print(f"- the big request's client went away ({outcome}); calls charged to its user: {charged}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny (test model) or a registered name")
    ap.add_argument("--seconds", type=float, default=300.0, help="--model: light phase")
    args = ap.parse_args()
    if args.model != "tiny":
        return served_model(args.model, args.seconds)
    first, cap = 20, ServeLimits().max_work_tokens
    p, b, s = 32, 64, max(8, cap // (32 * 64))
    start = time.strftime("%H:%M", time.gmtime())
    with Server("tiny", []) as srv:
        service(srv.url, "user7", "warm").score(request(np.random.default_rng(0), 1, b, s))
        light(srv.url, 5, 99)
        alone = light(srv.url, 40, 0)
        done = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            t = time.perf_counter()
            big = pool.submit(service(srv.url, "user5", "big").score,
                              request(np.random.default_rng(5), p, b, s))  # fmt: skip
            lights = pool.submit(light, srv.url, 0, 2, done=done)
            big.result()
            big_s = time.perf_counter() - t
            done.set()
            beside = lights.result()
    chunks = chunks_of(p, b, s)
    chunk_ms = 1000 * big_s / chunks
    print(f"{start}-{time.strftime('%H:%M', time.gmtime())} UTC, load average "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"- light alone: {len(alone)} requests, p50 {pct(alone, 50):.0f} ms, "
          f"p99 {pct(alone, 99):.0f} ms")  # fmt: skip
    print(f"- maximum-size request {p}x{b}x{s}: {big_s:.1f} s in {chunks} chunks, "
          f"one chunk {chunk_ms:.0f} ms")  # fmt: skip
    for name, xs in ((f"first {first}", beside[:first]), ("all", beside)):
        print(f"- light beside it, {name}: {len(xs)} requests, {pcts(xs, chunk_ms)}")
    over = sum(1000 * x > 2 * chunk_ms for x in beside)
    print(f"- light requests over 2 chunks: {over} of {len(beside)}")


if __name__ == "__main__":
    main()
