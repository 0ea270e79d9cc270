"""A run's identity: the hash of its whole resolved config, and what it ran on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import subprocess
from typing import Any


def canonical(config: Any) -> dict:
    """A config (dataclass or dict) as a plain JSON-able dict with sorted keys."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    if not isinstance(config, dict):
        raise TypeError(f"a run config must be a dataclass or a dict, got {type(config).__name__}")
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def config_hash(config: Any) -> str:
    """16 hex digits of sha256 over the canonical JSON of the resolved config."""
    blob = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two canonical configs: {field: (old, new)}."""
    keys = sorted(set(old) | set(new))
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def git_commit(repo: str | pathlib.Path | None = None) -> str:
    """The checkout's commit (with '+dirty' when tracked files differ), or 'unknown'."""
    cwd = pathlib.Path(repo or pathlib.Path(__file__).resolve().parents[2])
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--", "cbp_jax"], cwd=cwd, capture_output=True
        ).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
