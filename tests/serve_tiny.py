"""The scoring server over the tiny random test model, for tests and the load test.

`python -m tests.serve_tiny --db F --port N --key NAME:KEY:BUDGET ...` serves what
`cbp-jax serve` serves, through the same `make_server`, but with the 3-layer random model
and an untrained (deterministic) prompt generator that a test process can rebuild
in-process to compare. `--exit-after-commits N` makes the process die (exit 17) right
after the N-th response is charged and recorded, before it is sent: what a crash between
charging and answering looks like. Test-only: none of this is in the package.
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from cbp_jax.serve.app import ScoreServer, serve
from cbp_jax.serve.launch import make_server, read_users

TINY_WORDS = 101  # vocabulary of the tiny model (ids < 101)


def tiny_model(seed: int = 0):
    from cbp_jax.model import LlamaConfig, init_params
    from cbp_jax.model.registry import LoadedModel

    cfg = LlamaConfig(TINY_WORDS, 48, 80, 3, 6, 2, 8)
    return LoadedModel(cfg, init_params(cfg, jax.random.key(seed), std=0.2), None, "tiny")


def tiny_generator(model, seed: int = 0):
    """A freshly initialised generator (r = 16, t = 3) with a small random z0."""
    from cbp_jax.model.fingerprint import model_fingerprint
    from cbp_jax.prompts.artifact import GeneratorArtifact
    from cbp_jax.prompts.generator import GeneratorConfig, init_generator

    cfg = GeneratorConfig(
        hidden_size=model.cfg.hidden_size, task_dims=16, bottleneck=12, prompt_len=3,
        init_vocab=100,
    )  # fmt: skip
    state = init_generator(jax.random.key(seed + 1), cfg, model.params["embed"])
    z0 = 0.1 * np.random.default_rng(seed).normal(size=cfg.task_dims).astype(np.float32)
    params = jax.tree.map(np.asarray, state["params"])
    return GeneratorArtifact(
        cfg, params, np.asarray(state["A_DxR"]), z0, model_fingerprint(model), {"tasks": []}
    )


def tiny_server(args, seed: int = 0) -> ScoreServer:
    model = tiny_model(seed)
    users = read_users(args.users, args.key or [])
    return make_server(model, tiny_generator(model, seed), users, args, f"tiny-test-model-{seed}")


def _exit_after(server: ScoreServer, n: int) -> None:
    committed = server.committed

    def die_at_n():
        committed()
        if server.commits >= n:
            os._exit(17)  # charged and recorded, response lost

    server.committed = die_at_n


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", action="append")
    ap.add_argument("--users", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-window-ms", type=float, default=0.0)
    ap.add_argument("--max-pack", type=int, default=1)
    ap.add_argument("--max-rows", type=int, default=64)
    ap.add_argument("--max-body-bytes", type=int, default=8 << 20)
    ap.add_argument("--exit-after-commits", type=int, default=0)
    return ap


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    server = tiny_server(args, args.seed)
    if args.exit_after_commits:
        _exit_after(server, args.exit_after_commits)
    serve(server, port=args.port)


if __name__ == "__main__":
    main()
