"""Bounded load test of `cbp-jax serve` on loopback: batching vs one request at a time.

What: 8 users (threads, one API key each, one `RemoteService` each) send score requests
("task_vector" populations, P candidates x B examples of S tokens, random ids) as fast as
the server answers, a fixed number per user and at most `--duration` seconds per phase.
Three phases, each on a fresh server process with the same model: batching (window
`--window-ms`, packs of up to 32 requests / 64 candidates), packing without a window
(whatever is queued when the compiled call starts), and the baseline (window 0, one
request per compiled call). Every compiled shape is warmed up before timing. Reports
throughput (requests/s and candidate-examples/s), p50/p99 latency, errors (must be 0),
compiled calls made, and that the server charged exactly the calls answered.
Run: `.venv/bin/python experiments/load_test.py` (tiny model: about a minute on 2 cores).
Writes experiments/results/service_load.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import pathlib
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests

from cbp_jax.serve.batcher import row_bucket
from cbp_jax.serve.client import RemoteService
from cbp_jax.service.requests import ScoreRequest

USERS = 8


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, db: str, window_ms: float, max_pack: int):
    port = _port()
    keys = [f"--key=user{i}:user{i}-secret-key:100000000" for i in range(USERS)]
    model = ["--tiny-test-model", "0"] if args.model == "tiny" else ["--model", args.model]
    cmd = [sys.executable, "-m", "cbp_jax.serve.app", *model, "--db", db, "--port", str(port)]
    cmd += [f"--batch-window-ms={window_ms}", f"--max-pack={max_pack}", *keys]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1500):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if requests.get(url + "/v1/health", timeout=5).ok:
                return proc, url
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def make_request(rng, args, vocab: int) -> ScoreRequest:
    tokens = rng.integers(1, vocab, (args.batch, args.seq)).astype(np.int32)
    z = rng.normal(size=(args.population, args.task_dims)).astype(np.float32)
    return ScoreRequest("task_vector", z, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def phase(args, window_ms: float, max_pack: int) -> dict:
    db = os.path.join(tempfile.mkdtemp(prefix="cbp-load-"), "ledger.sqlite")
    proc, url = start_server(args, db, window_ms, max_pack)
    try:
        clients = [RemoteService(url, f"user{i}-secret-key") for i in range(USERS)]
        vocab = clients[0].public_info().vocab_size
        rng = np.random.default_rng(0)
        rows = sorted({row_bucket(k * args.population) for k in range(1, USERS + 1)})
        for p in rows:  # warm every packed row bucket: timing without compiles
            req = make_request(rng, args, vocab)
            payload = rng.normal(size=(p, args.task_dims)).astype(np.float32)
            clients[0].score(dataclasses.replace(req, payload=payload))
        packs0 = requests.get(url + "/v1/health", timeout=5).json()["packs"]
        used0 = sum(c.calls_used for c in clients)
        stop_at = time.monotonic() + args.duration

        def user(i):
            r = np.random.default_rng(100 + i)
            lat, errors = [], 0
            for _ in range(args.requests):
                if time.monotonic() > stop_at:
                    break
                req = make_request(r, args, vocab)
                t = time.perf_counter()
                try:
                    clients[i].score(req)
                    lat.append(time.perf_counter() - t)
                except Exception as e:  # counted, reported
                    errors += 1
                    print(f"user{i}: {type(e).__name__}: {e}", file=sys.stderr)
            return lat, errors

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(USERS) as pool:
            results = list(pool.map(user, range(USERS)))
        wall = time.perf_counter() - start
        lat = np.array([x for r in results for x in r[0]])
        charged = sum(c.calls_used for c in clients) - used0
        used = sum(c.budget()["used"] for c in clients)
        packs = requests.get(url + "/v1/health", timeout=5).json()["packs"] - packs0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    n = len(lat)
    return {
        "requests": n,
        "errors": sum(r[1] for r in results),
        "wall_s": wall,
        "req_per_s": n / wall,
        "calls_per_s": charged / wall,
        "p50_ms": 1000 * float(np.percentile(lat, 50)),
        "p99_ms": 1000 * float(np.percentile(lat, 99)),
        "packs": packs,
        "charged_ok": charged == n * args.population * args.batch
        and used == sum(c.calls_used for c in clients),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="'tiny' (random 3-layer) or a model name")
    ap.add_argument("--requests", type=int, default=40, help="per user")
    ap.add_argument("--duration", type=float, default=60.0, help="max seconds per phase")
    ap.add_argument("--population", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=16)
    ap.add_argument("--task-dims", type=int, default=16, help="r of the served generator")
    ap.add_argument("--window-ms", type=float, default=10.0)
    ap.add_argument("--out", default="experiments/results/service_load.md")
    args = ap.parse_args(argv)
    modes = (
        (f"batching ({args.window_ms:g} ms window, <= 32 requests/call)", args.window_ms, 32),
        ("packing what is queued (0 ms window, <= 32 requests/call)", 0.0, 32),
        ("one request at a time (0 ms window, 1 request/call)", 0.0, 1),
    )
    results = [(name, phase(args, window, pack)) for name, window, pack in modes]
    base = results[-1][1]["calls_per_s"]
    gain = results[0][1]["calls_per_s"] / base
    rows = [
        f"| {name} | {r['requests']} | {r['errors']} | {r['packs']} | {r['req_per_s']:.1f} | "
        f"{r['calls_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['charged_ok']} | "
        f"{r['calls_per_s'] / base:.2f}x |"
        for name, r in results
    ]
    model = "tiny random 3-layer model (--tiny-test-model 0: D=48, V=101)"
    lines = [
        "# Scoring service load test (loopback)",
        "",
        f"Command: `{shlex.join(['.venv/bin/python', 'experiments/load_test.py', *sys.argv[1:]])}`",
        "",
        f"Model: {model if args.model == 'tiny' else args.model}. {USERS} concurrent users, "
        f"{args.requests} requests each (at most {args.duration:g} s per phase); each request "
        f"a task_vector population of P={args.population} on B={args.batch} x S={args.seq} "
        f"tokens ({args.population * args.batch} calls). Server and clients share "
        f"{os.cpu_count()} CPU cores; CPU only. Compiled shapes warmed up before timing.",
        "",
        "| mode | requests | errors | compiled calls | req/s | calls/s | p50 ms | p99 ms "
        "| charged == answered | gain vs one at a time |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Batching gain (calls/s, batching / one at a time): **{gain:.2f}x**",
        "",
    ]
    text = "\n".join(lines)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)
    first = results[0][1]  # the batching mode
    for key in ("req_per_s", "calls_per_s", "p50_ms", "p99_ms", "errors"):
        print(f"RESULT {key} {first[key]:.4g}")
    print(f"RESULT errors_all_modes {sum(r['errors'] for _, r in results)}")
    print(f"RESULT batching_gain {gain:.3f}")
    if any(r["errors"] for _, r in results):
        raise SystemExit("load test had errors")


if __name__ == "__main__":
    main()
