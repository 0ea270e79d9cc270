"""Where the task files live: the repository's own `data/` copy unless told otherwise.

Resolution order: an explicit argument, then the CBP_JAX_DATA_DIR environment variable,
then `<repo>/data`. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "CBP_JAX_DATA_DIR"
REPO_DATA = pathlib.Path(__file__).resolve().parents[2] / "data"


def data_dir(override: str | os.PathLike | None = None) -> pathlib.Path:
    path = pathlib.Path(override or os.environ.get(ENV_VAR) or REPO_DATA)
    if not path.is_dir():
        raise FileNotFoundError(
            f"task data directory {path} does not exist (set {ENV_VAR} or pass data_dir)"
        )
    return path
