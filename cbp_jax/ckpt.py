"""Orbax checkpoint helpers: a pytree + JSON metadata per step (`Checkpointer`), and one saved
pytree beside a meta.json (`save_arrays` / `read_meta` / `restore_arrays`: generators, task
vectors and saved prompts). Typed PRNG keys are stored as their raw key data; callers wrap
them back with `jax.random.wrap_key_data`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Keeps the last `max_to_keep` steps of (state pytree, JSON meta) under `directory`."""

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 2):
        self.directory = pathlib.Path(directory).resolve()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def save(self, step: int, state: Any, meta: dict) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._manager.wait_until_finished()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore (state, meta) at `step` (default latest) into the structure of `target`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out.state, out.meta

    def close(self) -> None:
        self._manager.close()


# ---------------------------------------------------------------------------- arrays + meta.json


def save_arrays(path: str | pathlib.Path, tree: Any, meta: dict) -> pathlib.Path:
    """Orbax-save a pytree under path/arrays and write path/meta.json (overwrites)."""
    path = pathlib.Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    tree = jax.tree.map(lambda x: np.asarray(x), tree)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "arrays", tree, force=True)
        ckptr.wait_until_finished()
    (path / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return path


def read_meta(path: str | pathlib.Path, fmt: str) -> dict:
    path = pathlib.Path(path).resolve()
    meta_file = path / "meta.json"
    if not meta_file.is_file() or not (path / "arrays").is_dir():
        raise FileNotFoundError(f"{path} is not a saved {fmt} (no meta.json and arrays/)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != fmt:
        raise ValueError(f"{path} holds {meta.get('format')!r}, not a {fmt!r}")
    return meta


def restore_arrays(path: str | pathlib.Path, target: Any) -> Any:
    """Restore path/arrays into the structure, shapes and dtypes of `target`."""
    path = pathlib.Path(path).resolve()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target
    )
    with ocp.StandardCheckpointer() as ckptr:
        out = ckptr.restore(path / "arrays", abstract)
    return jax.tree.map(np.asarray, out)
