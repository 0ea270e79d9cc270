"""The light-beside-big measurement without HTTP: the batcher's queue alone (issue 43).

In one process, on the tiny test model: a Batcher (default config: fixed 1024-token tiles,
one chunk per turn, round robin) computes one big task_vector request (`--p` x 64 x 512,
user "big") while a light client submits P=2, B=4, S=16 jobs one after another (user
"light") until the big one ends. Each chunk's compute time is recorded (`Batcher.step`),
so the light latency (submit to answer) is compared with the big request's own chunk
time, with no HTTP, decoding or ledger work in between: what the scheduling alone gives.
Run: `nice -n 5 .venv/bin/python experiments/service_beside_inproc.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cbp_jax.serve.batcher import BatchConfig, Batcher, Job  # noqa: E402
from cbp_jax.service.oracle import CBPGenerator, NoPrompt, SoftPrompt  # noqa: E402
from tests.serve_tiny import tiny_generator, tiny_model  # noqa: E402


def job(user, p, b, s, rng) -> Job:
    tokens = rng.integers(1, 101, (b, s)).astype(np.int32)
    z = (0.02 * rng.normal(size=(p, 16))).astype(np.float32)
    return Job("task_vector", z, tokens, np.ones_like(tokens), np.array([[3], [4]]), user=user)


class TimedBatcher(Batcher):
    def __init__(self, *args):
        self.times: dict[str, list[float]] = {"big": [], "light": []}
        super().__init__(*args)

    def step(self, work):
        t = time.perf_counter()
        super().step(work)
        self.times.setdefault(work.user, []).append(time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=8, help="big request's population (chunks)")
    args = ap.parse_args()
    model = tiny_model(0)
    adapters = {a.kind: a for a in (NoPrompt(), SoftPrompt(), CBPGenerator(16))}
    batcher = TimedBatcher(model, adapters, tiny_generator(model, 0).adapter_params(),
                           BatchConfig())  # fmt: skip
    rng = np.random.default_rng(0)
    try:
        for shape in ((1, 64, 512), (2, 4, 16), (2, 4, 16)):  # compile both tiles first
            batcher.submit(job("warm", *shape, rng)).result()
        big = batcher.submit(job("big", args.p, 64, 512, rng))
        lights = []
        while not big.done():
            t = time.perf_counter()
            batcher.submit(job("light", 2, 4, 16, rng)).result()
            lights.append(time.perf_counter() - t)
        big.result()
    finally:
        batcher.close()
    chunk = 1000 * float(np.median(batcher.times["big"]))
    own = 1000 * float(np.median(batcher.times["light"]))
    lat = 1000 * np.array(lights)
    p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
    print(f"load average {os.getloadavg()[0]:.1f}; big {args.p}x64x512: "
          f"{len(batcher.times['big'])} chunks, median {chunk:.0f} ms, p99 "
          f"{1000 * np.percentile(batcher.times['big'], 99):.0f} ms; light chunk median "
          f"{own:.0f} ms")  # fmt: skip
    print(f"light beside it: {len(lat)} jobs, p50 {p50:.0f} ms ({p50 / chunk:.2f} chunks), "
          f"p99 {p99:.0f} ms ({p99 / chunk:.2f} chunks), max {lat.max():.0f} ms "
          f"({lat.max() / chunk:.2f} chunks)")  # fmt: skip


if __name__ == "__main__":
    main()
