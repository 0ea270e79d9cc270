"""Where the task files live and where their built TFDS copies are cached.

Task files: an explicit argument (the CLI's --data-dir), then the CBP_JAX_DATA_DIR
environment variable, then the repository's own `<repo>/data`. Nothing is ever downloaded.

TFDS cache (built array_record files): an explicit argument, then CBP_JAX_TFDS_DIR, then
`$XDG_CACHE_HOME/cbp_jax/tfds` (default `~/.cache/cbp_jax/tfds`). It lives outside the
repository, so a fresh clone rebuilds it on first use (a few seconds for all tasks).
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "CBP_JAX_DATA_DIR"
CACHE_ENV_VAR = "CBP_JAX_TFDS_DIR"
REPO_DATA = pathlib.Path(__file__).resolve().parents[2] / "data"


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    path = pathlib.Path(override or os.environ.get(ENV_VAR) or REPO_DATA)
    if not path.is_dir():
        raise FileNotFoundError(
            f"task data directory {path} does not exist (set {ENV_VAR} or pass data_dir)"
        )
    return path


def cache_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    """The TFDS cache root, created if missing."""
    if override or os.environ.get(CACHE_ENV_VAR):
        path = pathlib.Path(override or os.environ[CACHE_ENV_VAR])
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
        path = pathlib.Path(xdg) / "cbp_jax" / "tfds"
    path.mkdir(parents=True, exist_ok=True)
    return path
