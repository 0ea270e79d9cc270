"""kill -9 under load against the current server (issue 43): 0 lost, 0 double-charged.

The load test's kill phase (`load_test.kill_test`) on its own: 4 clients, each sending
`--kill-requests` small/medium task_vector requests one after another with stable
request ids and retries (small 2 x 4 x 16 = 1 chunk, medium 8 x 8 x 32 = 2 chunks of the
fixed 1024-token tiles); the server gets SIGKILL once a third of them are answered and
is restarted on the same SQLite ledger. Lost = requests never answered; double-charged =
the ledger's calls - the calls of the distinct requests answered.
`--sizes small,medium,large` adds large requests (16 x 16 x 64 = 16 chunks), so the kill
is likely to land between two chunks of a started request.
Run: `nice -n 5 .venv/bin/python experiments/service_kill_load.py [--kill-requests N]
[--sizes small,medium,large]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load_test import kill_lines, kill_test  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kill-requests", type=int, default=30, help="per client")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--sizes", default="small,medium", help="of load_test.SIZES, comma-separated")
    args = ap.parse_args()
    t0, start = time.perf_counter(), time.strftime("%H:%M", time.gmtime())
    kill = kill_test(args, args.sizes.split(","))
    wall = time.perf_counter() - t0
    print(f"{start}-{time.strftime('%H:%M', time.gmtime())} UTC, {wall:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("\n".join(kill_lines(kill)))


if __name__ == "__main__":
    main()
