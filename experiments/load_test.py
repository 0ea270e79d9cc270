"""Bounded load test of the scoring service on loopback: throughput, fairness, kill -9.

One run, one machine (server and clients share its cores), four parts:
1. Throughput: 1, 4 and 16 concurrent clients (one API key each), each sending mixed-size
   task_vector requests (small P=2 B=4 S=16, medium P=8 B=8 S=32, large P=16 B=16 S=64)
   back to back for `--duration` s: p50/p99 latency, requests/s and calls/s (1 call = 1
   candidate on 1 batch), one request at a time (default) vs packing (10 ms, <= 32).
2. Packing on the embedded model (SmolLM2-135M, `--embedded`): 4 clients, small requests
   (soft prompts: no generator is loaded), one at a time vs packing; the faster one is
   the server default.
3. Fairness: user "big" keeps 4 large requests in flight while one small client sends
   small requests one after another: the small requests' p50/p99 against the large
   request's own service time (a fair server holds a small request behind at most one).
4. kill -9: 4 clients with stable request ids; the server is killed (SIGKILL) mid-load and
   restarted on the same database; clients retry. Lost = requests never answered;
   double-charged = ledger calls - calls of the distinct requests answered.
Shape buckets are compiled before timing (packing: `--duration` s of 16 clients, untimed).
Run: `nice -n 15 .venv/bin/python experiments/load_test.py [--embedded]` (writes
experiments/results/service_load.md; default model: the tiny random test model).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import requests

from cbp_jax.contract import ScoreRequest
from cbp_jax.serve.client import RemoteService, RetryPolicy

SIZES = {"small": (2, 4, 16), "medium": (8, 8, 32), "large": (16, 16, 64)}  # P, B, S
USERS = [f"user{i}" for i in range(16)] + ["big"]
PACKED = ["--batch-window-ms=10", "--max-pack=32"]
ONE = ["--batch-window-ms=0", "--max-pack=1"]


class Server:
    def __init__(self, model: str, flags: list[str]):
        self.db = os.path.join(tempfile.mkdtemp(prefix="cbp-load-"), "ledger.sqlite")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        keys = [f"--key={u}:{u}-secret-key:1000000000" for u in USERS]
        if model == "tiny":
            head = [sys.executable, "-m", "tests.serve_tiny"]
        else:
            head = [sys.executable, "-m", "cbp_jax.cli", "serve", "--model", model]
        self.cmd = [*head, "--db", self.db, "--port", str(self.port), *flags, *keys]
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3000):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if requests.get(self.url + "/v1/health", timeout=5).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def rss_mb(self) -> float:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def used(self) -> int:
        return sum(RemoteService(self.url, f"{u}-secret-key").budget()["used"] for u in USERS)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def request(rng, p: int, b: int, s: int, kind: str = "task_vector", d: int = 576, t: int = 8):
    """P candidates on B x S random tokens: task_vector (r = 16: the tiny model's generator)
    or, for a served model without a generator, a soft prompt of t tokens (D = 576, SmolLM2)."""
    tokens = rng.integers(1, 101, (b, s)).astype(np.int32)
    shape = (p, 16) if kind == "task_vector" else (p, t, d)
    z = (0.02 * rng.normal(size=shape)).astype(np.float32)
    return ScoreRequest(kind, z, tokens, np.ones_like(tokens), np.array([[3], [4]]))


def client(url, user, sizes, stop_at, count=None, seed=0, retry=None, answered=None, kind=None):
    """Send requests back to back: [(size, latency s, population)], errors."""
    retry = retry or RetryPolicy()
    svc = RemoteService(url, f"{user}-secret-key", run_id=f"load-{user}-{seed}", retry=retry)
    rng, out, errors = np.random.default_rng(seed), [], 0
    while time.monotonic() < stop_at and (count is None or len(out) < count):
        size = sizes[int(rng.integers(len(sizes)))]
        req = request(rng, *SIZES[size], kind or "task_vector")
        t = time.perf_counter()
        try:
            svc.score(req)
            out.append((size, time.perf_counter() - t, req.population))
            if answered is not None:
                answered.release()
        except Exception as e:  # counted and reported
            errors += 1
            print(f"{user}: {type(e).__name__}: {e}", file=sys.stderr)
            if errors > 10:
                break
    return out, errors


def clients(url, n, sizes, duration, users=USERS, **kw):
    stop_at = time.monotonic() + duration
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [
            pool.submit(client, url, users[i], sizes, stop_at, seed=i, **kw) for i in range(n)
        ]
        results = [f.result() for f in futures]
    return [x for r in results for x in r[0]], sum(r[1] for r in results)


def stats(samples, wall) -> dict:
    lat = np.array([s[1] for s in samples]) * 1000
    return {
        "n": len(samples),
        "p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "rps": len(samples) / wall,
        "cps": sum(s[2] for s in samples) / wall,
    }


def warm(url, sizes, packs_for: float = 0.0, kind=None) -> None:
    """Compile before timing: each size's bucket, then (packing) `packs_for` s of 16
    clients, so the packed row buckets that the timed phases meet are compiled too."""
    for size in sizes:
        client(url, "user0", [size], time.monotonic() + 600, count=2, seed=99, kind=kind)
    if packs_for:
        clients(url, 16, sizes, packs_for, kind=kind)


def throughput(args, model, flags, sizes, counts, kind=None) -> list[dict]:
    with Server(model, flags) as srv:
        packs_for = args.duration if "--max-pack=32" in flags else 0.0
        warm(srv.url, sizes, packs_for, kind)
        rows = []
        for n in counts:
            t = time.perf_counter()
            samples, errors = clients(srv.url, n, sizes, args.duration, kind=kind)
            rows.append({"clients": n, "errors": errors, **stats(samples, time.perf_counter() - t)})
        health = requests.get(srv.url + "/v1/health", timeout=10).json()
        rows[-1].update(compiles=health["compiles"], rss=srv.rss_mb())
    return rows


def fairness(args) -> dict:
    with Server(args.model, ONE) as srv:
        warm(srv.url, ["small", "large"])
        alone, _ = clients(srv.url, 1, ["large"], args.duration / 2, users=["big"])
        stop_at = time.monotonic() + args.duration
        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            big = [
                pool.submit(client, srv.url, "big", ["large"], stop_at, seed=10 + i)
                for i in range(4)
            ]
            small = pool.submit(client, srv.url, "user1", ["small"], stop_at, seed=1)
            small_samples, errors = small.result()
            errors += sum(f.result()[1] for f in big)
    return {"small": stats(small_samples, 1.0), "large_alone": stats(alone, 1.0), "errors": errors}


def kill_test(args, sizes=("small", "medium")) -> dict:
    retry = RetryPolicy(timeout_s=60, deadline_s=300, backoff_s=0.2, backoff_max_s=2)
    with Server(args.model, ONE) as srv:
        warm(srv.url, list(sizes))
        used0 = srv.used()
        answered, restarted = threading.Semaphore(0), threading.Event()

        def kill_and_restart():  # SIGKILL once a third of the requests are answered
            for _ in range(4 * args.kill_requests // 3):
                answered.acquire()
            srv.proc.kill()
            srv.proc.wait()
            srv.start()
            restarted.set()

        threading.Thread(target=kill_and_restart, daemon=True).start()
        samples, errors = clients(
            srv.url, 4, list(sizes), 10**6, count=args.kill_requests, retry=retry,
            answered=answered,
        )  # fmt: skip
        if not restarted.wait(timeout=300):
            raise RuntimeError("the server was not killed and restarted")
        charged = srv.used() - used0
    answered = sum(s[2] for s in samples)
    return {
        "sent": 4 * args.kill_requests, "answered": len(samples), "errors": errors,
        "ledger": charged, "answered_calls": answered, "double": charged - answered,
    }  # fmt: skip


def kill_lines(kill: dict) -> list[str]:
    return [f"- requests sent {kill['sent']}, answered {kill['answered']}, lost "
            f"{kill['sent'] - kill['answered']}, client errors {kill['errors']}",
            f"- ledger charged {kill['ledger']} calls; the distinct answered requests cost "
            f"{kill['answered_calls']}: double-charged {kill['double']}"]  # fmt: skip


def table(rows, modes) -> list[str]:
    out = ["| server | clients | requests | errors | p50 ms | p99 ms | req/s | calls/s |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for mode, rs in zip(modes, rows, strict=True):
        out += [f"| {mode} | {r['clients']} | {r['n']} | {r['errors']} | {r['p50']:.0f} | "
                f"{r['p99']:.0f} | {r['rps']:.2f} | {r['cps']:.1f} |" for r in rs]  # fmt: skip
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="'tiny' (random 3-layer test model)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per timed phase")
    ap.add_argument("--kill-requests", type=int, default=30, help="per client, kill test")
    ap.add_argument("--embedded", action="store_true", help="also compare packing on SmolLM2")
    ap.add_argument("--out", default="experiments/results/service_load.md")
    args = ap.parse_args(argv)
    mixed, counts = list(SIZES), (1, 4, 16)
    one = throughput(args, args.model, ONE, mixed, counts)
    packed = throughput(args, args.model, PACKED, mixed, counts)
    gains = [p["cps"] / o["cps"] for o, p in zip(one, packed, strict=True)]
    emb = None
    if args.embedded:
        emb = [
            throughput(args, "smollm2-135m", flags, ["small"], (4,), "prompt")[0]
            for flags in (ONE, PACKED)
        ]
    fair = fairness(args)
    kill = kill_test(args)
    cmd = shlex.join([".venv/bin/python", "experiments/load_test.py", *sys.argv[1:]])
    lines = [
        "# Scoring service load test (loopback)", "",
        f"Command: `nice -n 15 {cmd}` (one run). Machine: {os.cpu_count()} CPU cores, CPU "
        "only, shared with other jobs during the run (load average above 4), so absolute "
        "figures are noisy; server and clients share the cores. Model: the tiny random "
        "3-layer test model (tests/serve_tiny.py) unless said. Requests: task_vector, mixed "
        f"sizes {SIZES} (P, B, S), each costing P calls (1 call = 1 candidate on 1 batch). "
        f"Shape buckets warmed before timing (packing: {args.duration:g} s of 16 clients "
        f"first); {args.duration:g} s per phase.", "",
        "## Throughput and latency", "",
        *table([one, packed], ["one at a time (default)", "packing, 10 ms window"]), "",
        "Packing / one at a time, calls/s: "
        + ", ".join(f"{n} clients {g:.2f}x" for n, g in zip(counts, gains, strict=True)) + ".",
        f"Compiled executables after the mixed phases: {one[-1]['compiles']} (one at a time), "
        f"{packed[-1]['compiles']} (packing); server RSS {one[-1]['rss']:.0f} MB / "
        f"{packed[-1]['rss']:.0f} MB (LRU bound: 32 executables).", "",
    ]  # fmt: skip
    if emb:
        g = emb[1]["cps"] / emb[0]["cps"]
        lines += ["## Packing on the embedded model (SmolLM2-135M, 4 clients)", "",
                  "Small requests as soft prompts (P=2 x 8 x 576, B=4, S=16).", "",
                  *table([[emb[0]], [emb[1]]], ["one at a time", "packing, 10 ms window"]), "",
                  f"Packing / one at a time: **{g:.2f}x** calls/s.", ""]  # fmt: skip
    s, big = fair["small"], fair["large_alone"]
    lines += [
        "## Fairness", "",
        "User big keeps 4 large requests in flight; user1 sends small requests one after "
        "another (default server: per-user fair queue, one request at a time).", "",
        f"- small requests while big runs: {s['n']} answered, p50 {s['p50']:.0f} ms, "
        f"p99 {s['p99']:.0f} ms", f"- one large request alone: p50 {big['p50']:.0f} ms, "
        f"p99 {big['p99']:.0f} ms", f"- errors: {fair['errors']}",
        "- fair if the small p99 stays near one large request plus one small one (not "
        "4 large ones, what an arrival-ordered queue would give)", "",
        "## kill -9 mid-load", "",
        f"4 clients x {args.kill_requests} requests (small/medium, stable request ids, "
        "retries); the server got SIGKILL (kill -9) once a third of them were answered and "
        "was restarted on the same database.", "",
        *kill_lines(kill), "",
    ]  # fmt: skip
    text = "\n".join(lines)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
