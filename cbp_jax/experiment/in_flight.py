"""Unfinished runs survive a lost machine: stash a run's latest checkpoint beside the records.

`checkpoints/` is not committed and does not survive from one machine to the next; the
repository does. `stash(run_dir, dest)` copies the newest Orbax step of a run's ES
checkpoint and its log (a few MB) under `dest`; `restore(dest, run_dir)` copies them back
before the run starts, so the run resumes where the stash left it (the engine's resume is
exact: same result as an uninterrupted run). A stash is keyed by the run directory's name,
which carries the config hash, so a stash never resumes a run of another config.
"""

from __future__ import annotations

import pathlib
import shutil


def _steps(es_dir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in es_dir.iterdir() if p.is_dir() and p.name.isdigit())


def stash(run_dir: str | pathlib.Path, dest: str | pathlib.Path) -> pathlib.Path | None:
    """Copy run_dir/es's newest checkpoint step and log.jsonl to dest/<run name>/es."""
    es = pathlib.Path(run_dir) / "es"
    if not es.is_dir() or not _steps(es):
        return None
    out = pathlib.Path(dest) / pathlib.Path(run_dir).name / "es"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    step = _steps(es)[-1]
    shutil.copytree(es / str(step), out / str(step))
    if (es / "log.jsonl").exists():
        shutil.copy2(es / "log.jsonl", out / "log.jsonl")
    return out


def restore(dest: str | pathlib.Path, run_dir: str | pathlib.Path) -> bool:
    """Put a stashed checkpoint back into run_dir/es unless the run has a newer one there."""
    src = pathlib.Path(dest) / pathlib.Path(run_dir).name / "es"
    es = pathlib.Path(run_dir) / "es"
    if not src.is_dir() or not _steps(src):
        return False
    if es.is_dir() and _steps(es) and _steps(es)[-1] >= _steps(src)[-1]:
        return False
    es.mkdir(parents=True, exist_ok=True)
    for step in _steps(src):
        shutil.copytree(src / str(step), es / str(step), dirs_exist_ok=True)
    if (src / "log.jsonl").exists():
        shutil.copy2(src / "log.jsonl", es / "log.jsonl")
    return True
