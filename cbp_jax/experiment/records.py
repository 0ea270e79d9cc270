"""Committed run records: one JSON line per finished run, looked up by cell, checked by hash.

`<table>_runs.jsonl` holds each finished run of a table: cell name, identity (hash of the
resolved config), the config, commit, dtype and result, as sorted-key JSON lines that are
only appended, so a fresh clone reads exactly what was committed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from cbp_jax.experiment.identity import canonical, config_diff, config_hash


class RecordMismatchError(ValueError):
    """A committed record's config differs from the config the plan asks for."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a table: its name (unique in the table) and its resolved config."""

    name: str
    config: Any

    def __post_init__(self):
        if not self.name or "\n" in self.name:
            raise ValueError(f"a cell name must be a non-empty single line, got {self.name!r}")


class RecordStore:
    """The records of one table, read from and appended to one JSONL file.

    defaults: field -> default of the config type, or a function of a record's config
    giving that mapping; a field the record lacks (added to the config after the run)
    counts at its default, so additive config changes keep records. A cell config with a
    `record_defaults(recorded_config)` method (RunConfig) supplies its own, overriding
    `defaults`: a field whose default changed meaning (RunConfig.p0) must count at the
    value the record ran with, not today's default.
    """

    def __init__(self, path: str | pathlib.Path, defaults=None):
        self.path = pathlib.Path(path)
        self.defaults = defaults if callable(defaults) else canonical(defaults or {})
        self.records: dict[str, dict] = {}
        self._size = -1
        self._refresh()

    def _refresh(self) -> None:
        """Reread the file if it changed size: another process (a second run on the other
        core, say) may have appended records since this store last read it."""
        size = self.path.stat().st_size if self.path.exists() else -1
        if size == self._size:
            return
        records = {}
        if size >= 0:
            for i, line in enumerate(self.path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    records[rec["name"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{self.path}:{i}: not a run record ({e})") from e
        self.records, self._size = records, size

    def _matches(self, rec: dict, want: dict, config: Any) -> dict:
        own = getattr(config, "record_defaults", None)
        defaults = own if callable(own) else self.defaults
        if callable(defaults):
            defaults = canonical(defaults(rec["config"]))
        have = {**{k: v for k, v in defaults.items() if k in want}, **rec["config"]}
        return config_diff(have, want)

    def get(self, cell: Cell) -> dict | None:
        """The record of `cell`, None if it has none; raises if its config differs."""
        self._refresh()
        rec = self.records.get(cell.name)
        if rec is None:
            return None
        want = canonical(cell.config)
        if rec["id"] == config_hash(want):
            return rec
        diff = self._matches(rec, want, cell.config)
        if diff:
            fields = "; ".join(f"{k}: recorded {o!r}, planned {n!r}" for k, (o, n) in diff.items())
            raise RecordMismatchError(
                f"{self.path}: record {cell.name!r} ran with another config ({fields}); "
                "remove its line to rerun it with the planned config"
            )
        return rec

    def append(self, cell: Cell, result: dict, *, commit: str, dtype: str) -> dict:
        """Record a finished run (appended to the file at once) and return the record. If
        another process recorded the same run meanwhile, its record stands and is returned."""
        if cell.name in self.records:
            raise ValueError(f"{self.path}: {cell.name!r} is already recorded")
        self._refresh()
        if cell.name in self.records and self.get(cell) is not None:
            return self.records[cell.name]  # written by another process first: keep one
        config = canonical(cell.config)
        rec = {
            "name": cell.name,
            "id": config_hash(config),
            "config": config,
            "commit": commit,
            "dtype": dtype,
            "result": json.loads(json.dumps(result, default=_jsonable)),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
        self.records[cell.name] = rec
        return rec


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON-serialisable in a run result: {type(x).__name__}")
