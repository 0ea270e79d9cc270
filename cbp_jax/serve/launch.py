"""Build a `ScoreServer` from `cbp-jax serve` options: model, generator, users, database.

The users file (plus `--key` values) is the source of truth for who may call: at start-up
the ledger is synced to it, so a user removed from the file is revoked; `revoke_key`
(`cbp-jax serve keys revoke NAME`) revokes one in a running server (tests/serve_tiny.py
serves the tiny random test model through the same `make_server`).
"""

from __future__ import annotations

import pathlib

from cbp_jax.serve.batcher import BatchConfig
from cbp_jax.serve.ledger import Ledger, UserSpec
from cbp_jax.serve.limits import ServeLimits


def read_users(path: str | None, keys: list[str]) -> list[UserSpec]:
    """Users from a file of NAME:KEY:BUDGET lines (# comments allowed) and `--key` values."""
    lines = []
    if path:
        text = pathlib.Path(path).read_text().splitlines()
        lines += [(f"{path} line {i}", x) for i, x in enumerate(text, 1)]
    lines += [(f"--key value {i}", x) for i, x in enumerate(keys, 1)]
    users = [
        UserSpec.parse(x, where)
        for where, x in lines
        if x.strip() and not x.lstrip().startswith("#")
    ]
    names = [u.name for u in users]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate user names in {names}")
    if len({u.key for u in users}) != len(users):
        raise ValueError("two users share one API key; each user needs its own")
    return users


def make_server(model, artifact, users, args, name: str):
    """A ScoreServer over `model` (+ the generator `artifact`, or None) for `users`."""
    from cbp_jax.serve.app import ScoreServer
    from cbp_jax.service.oracle import CBPGenerator, DeepPrompt, NoPrompt, SoftPrompt

    adapters = [NoPrompt(), SoftPrompt(), DeepPrompt()]
    adapter_params = release = None
    if artifact is not None:
        adapters.append(CBPGenerator(task_dims=artifact.cfg.task_dims))
        adapter_params, release = artifact.adapter_params(), artifact.release()
    ledger = Ledger(args.db)
    revoked = ledger.sync_users(users)
    if revoked:
        print(f"cbp-jax serve: revoked users no longer in the users file: {revoked}")
    limits = ServeLimits(max_body_bytes=args.max_body_bytes)
    batching = BatchConfig(
        window_ms=args.batch_window_ms, max_requests=args.max_pack, max_rows=args.max_rows
    )
    return ScoreServer(
        model, adapters, adapter_params, ledger, model_name=name, limits=limits,
        batching=batching, release=release,
    )  # fmt: skip


def build_server(args):
    """A ScoreServer for parsed `serve` arguments (see cli.py)."""
    from cbp_jax.model import load_model

    users = read_users(args.users, args.key or [])
    if not users:
        raise SystemExit("cbp-jax serve: no users; pass --users FILE or --key NAME:KEY:BUDGET")
    model = load_model(args.model, dtype=args.dtype)
    artifact = None
    if args.generator:
        from cbp_jax.prompts.artifact import load_generator

        artifact = load_generator(args.generator, expected_model=model)
    return make_server(model, artifact, users, args, pathlib.Path(args.model).name)


def revoke_key(args) -> None:
    """`cbp-jax serve keys revoke NAME --db F`: revoke in the ledger file, which a running
    server reads per request and between chunks (no restart). Remove the user from the
    users file too, or the next start restores the key."""
    if not Ledger(args.db).revoke(args.name):
        raise SystemExit(f"cbp-jax serve keys revoke: no active user {args.name!r} in {args.db}")
    print(f"revoked {args.name!r} in {args.db}; also remove it from the users file")


def run_serve(args) -> None:
    from cbp_jax.serve.app import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}, reachable beyond this machine", flush=True)
    serve(build_server(args), host=args.host, port=args.port)
