"""Finished steps of a long run, kept on disk so a killed run resumes after its last one.

For a run that is not one ES loop (POST's table cell): `cache(key, compute)` returns what
`compute()` returned the first time (a dict of arrays), saved as `<directory>/<key>.npz`
once finished (written beside and renamed, so a kill leaves no step half-saved; loads are
bit-identical). The directory should carry the run's config hash; `StepCache(None)` keeps
nothing. `stash` (committed, under stashes/<study>/) keeps a second copy of the `stash_keys`
steps that depend on nothing machine-local, which a fresh machine's cache reads from.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
from collections.abc import Callable, Iterable

import numpy as np

_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class StepCache:
    """Per-step arrays of one run under `directory` (None: no caching)."""

    def __init__(
        self,
        directory: str | pathlib.Path | None,
        stash: str | pathlib.Path | None = None,
        stash_keys: Iterable[str] = (),
    ):
        self.directory = None if directory is None else pathlib.Path(directory)
        self.stash = None if stash is None else pathlib.Path(stash)
        self.stash_keys = frozenset(stash_keys)
        if self.stash_keys and (self.directory is None or self.stash is None):
            raise ValueError("stash_keys need both a cache directory and a stash directory")
        self.loaded: list[str] = []  # keys served from disk in this process

    def __call__(self, key: str, compute: Callable[[], dict]) -> dict[str, np.ndarray]:
        if not _KEY.match(key):
            raise ValueError(f"step key {key!r}: use letters, digits, '_', '-' and '.' only")
        if self.directory is None:
            return {k: np.asarray(v) for k, v in compute().items()}
        path = self.directory / f"{key}.npz"
        stashed = None if key not in self.stash_keys else self.stash / path.name
        if not path.exists() and stashed is not None and stashed.exists():
            self.directory.mkdir(parents=True, exist_ok=True)
            shutil.copy2(stashed, path)  # a fresh machine: the committed copy
        if path.exists():
            with np.load(path) as f:
                self.loaded.append(key)
                return {k: f[k] for k in f.files}
        out = {k: np.asarray(v) for k, v in compute().items()}
        if bad := [k for k, v in out.items() if v.dtype == object]:
            raise ValueError(f"step {key!r}: {bad} are not numeric arrays (None? use nan)")
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
        if stashed is not None:
            stashed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stashed.with_name(tmp.name))
            os.replace(stashed.with_name(tmp.name), stashed)
        return out
