"""Build a `ScoreServer` from `cbp-jax serve` options: model, generator, users, database.

`tiny_model(seed)` / `tiny_generator(model, seed)` are the 3-layer random model and the
untrained (deterministic) prompt generator that the tests and the load test serve with
`--tiny-test-model SEED`; a test process builds the same arrays in-process to compare.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from cbp_jax.serve.batcher import BatchConfig
from cbp_jax.serve.ledger import Ledger, UserSpec
from cbp_jax.serve.limits import ServeLimits

TINY_WORDS = 101  # vocabulary of the tiny model (ids < 101)


def tiny_model(seed: int = 0):
    from cbp_jax.model import LlamaConfig, init_params
    from cbp_jax.model.registry import LoadedModel

    cfg = LlamaConfig(TINY_WORDS, 48, 80, 3, 6, 2, 8)
    return LoadedModel(cfg, init_params(cfg, jax.random.key(seed), std=0.2), None, "tiny")


def tiny_generator(model, seed: int = 0):
    """A freshly initialised generator (r = 16, t = 3) with a small random z0."""
    from cbp_jax.prompts.artifact import GeneratorArtifact, model_fingerprint
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


def read_users(path: str | None, keys: list[str]) -> list[UserSpec]:
    """Users from a file of NAME:KEY:BUDGET lines (# comments allowed) and `--key` values."""
    lines = []
    if path:
        lines += pathlib.Path(path).read_text().splitlines()
    lines += keys
    users = [UserSpec.parse(x) for x in lines if x.strip() and not x.lstrip().startswith("#")]
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate user names in {names}")
    return users


def build_server(args):
    """A ScoreServer for parsed `serve` arguments (see cli.py)."""
    from cbp_jax.serve.app import ScoreServer
    from cbp_jax.service.oracle import CBPGenerator, DeepPrompt, NoPrompt, SoftPrompt

    users = read_users(args.users, args.key or [])
    if not users:
        raise SystemExit("cbp-jax serve: no users; pass --users FILE or --key NAME:KEY:BUDGET")
    adapters = [NoPrompt(), SoftPrompt(), DeepPrompt()]
    adapter_params = None
    if args.tiny_test_model is not None:
        model = tiny_model(args.tiny_test_model)
        artifact = tiny_generator(model, args.tiny_test_model)
        name = f"tiny-test-model-{args.tiny_test_model}"
    else:
        from cbp_jax.model import load_model

        model = load_model(args.model, dtype=args.dtype)
        name = pathlib.Path(args.model).name
        artifact = None
        if args.generator:
            from cbp_jax.prompts.artifact import load_generator

            artifact = load_generator(args.generator, expected_model=model)
    if artifact is not None:
        adapters.append(CBPGenerator(task_dims=artifact.cfg.task_dims))
        adapter_params = artifact.adapter_params()
    ledger = Ledger(args.db)
    ledger.upsert_users(users)
    limits = ServeLimits(max_body_bytes=args.max_body_bytes)
    batching = BatchConfig(
        window_ms=args.batch_window_ms, max_requests=args.max_pack, max_rows=args.max_rows
    )
    return ScoreServer(
        model,
        adapters,
        adapter_params,
        ledger,
        model_name=name,
        limits=limits,
        batching=batching,
        exit_after_commits=args.exit_after_commits,
    )


def run_serve(args) -> None:
    from cbp_jax.serve.app import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, reachable beyond this machine", flush=True)
    serve(build_server(args), host=args.host, port=args.port)
