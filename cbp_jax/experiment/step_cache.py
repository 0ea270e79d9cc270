"""Finished steps of a long run, kept on disk so a killed run resumes after its last one.

A run that is not one ES loop (POST's table cell: prompt tunings, shadow prompts, transfers,
hours in all on a CPU) has no engine checkpoint; `StepCache(directory)` gives it one at step
granularity. `cache(key, compute)` returns the arrays `compute()` returned the first time
(a dict of arrays and scalars), saved as `<directory>/<key>.npz` once the step has finished:
the file is written beside and renamed into place, so a kill mid-write leaves no step
half-saved. Loaded arrays are bit-identical to the computed ones, so a resumed run ends
where an uninterrupted one does. The directory should carry the run's config hash (a cache
never serves a run of another config); `StepCache(None)` computes everything, keeps nothing.

`checkpoints/` does not survive a replaced machine. `stash` (a committed directory under
stashes/<study>/) and `stash_keys` keep a second copy of the steps that depend on nothing
machine-local (POST: the teacher's prompts, not those tuned on a re-distillable student):
they are copied there once finished, and a fresh machine's cache reads them from there.
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
