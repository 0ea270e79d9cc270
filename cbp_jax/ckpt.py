"""Orbax checkpoint helpers: save a pytree + JSON metadata per step, restore the latest.

Typed PRNG keys are stored as their raw key data (Orbax saves plain arrays); callers wrap
them back with `jax.random.wrap_key_data`.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
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


class StepLog:
    """The per-step JSONL log of a resumable training run (`<run_dir>/log.jsonl`).

    `StepLog(run_dir, step)` keeps the rows up to the restored `step` (a killed run may have
    logged past its last checkpoint) and rewrites the file to them; `append(row)` adds a row
    and flushes it. `run_dir=None` keeps the rows in memory only. `history` is every row.
    """

    def __init__(self, run_dir: str | pathlib.Path | None, step: int = 0):
        self.path = None if run_dir is None else pathlib.Path(run_dir) / "log.jsonl"
        self.history: list[dict] = []
        self._file = None
        if self.path is None:
            return
        if step > 0 and self.path.exists():
            rows = [json.loads(x) for x in self.path.read_text().splitlines()]
            self.history = [r for r in rows if r["step"] <= step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        self._file = self.path.open("a")

    def append(self, row: dict) -> None:
        self.history.append(row)
        if self._file is not None:
            self._file.write(json.dumps(row) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
