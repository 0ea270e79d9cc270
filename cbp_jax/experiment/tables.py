"""A table's markdown from its records: new runs' report first, then its legacy numbers.

The records side every study's table shares: `write_table` writes `<stem>.md` from the
records only (legacy records rendered by `legacy.py`), so a fresh clone regenerates it byte
for byte; `get_or_run` is one sub-run as a cell.
"""

from __future__ import annotations

import pathlib

from cbp_jax.experiment import legacy
from cbp_jax.experiment.records import RecordStore


def render_table(store: RecordStore, stem: str, new_section: str = "") -> str:
    """`<stem>.md` from records: the new runs' section (if any), then the legacy table."""
    records = list(store.records.values())
    parts = [new_section.rstrip("\n") + "\n"] if new_section else []
    if f"legacy/{stem}/document" in store.records:
        if parts:
            parts.append("\n")
        parts.append(legacy.render(records, stem))
    if not parts:
        raise ValueError(f"{store.path}: no records for table {stem!r}")
    return "".join(parts)


def write_table(store: RecordStore, stem: str, results: pathlib.Path,
                new_section: str = "") -> pathlib.Path:  # fmt: skip
    out = results / f"{stem}.md"
    out.write_text(render_table(store, stem, new_section))
    return out


def get_or_run(store: RecordStore, cell, compute, *, dry_run: bool = False):
    """One cell's result value: its record's, else `compute()` run and recorded (None when
    dry_run and unrecorded). For scripts whose runs nest (a table's sub-runs share state), so
    each sub-run is its own cell; the value is stored as {"value": ...}."""
    from cbp_jax.experiment.layer import run_cells

    records, _ = run_cells([cell], store, lambda _config: {"value": compute()},
                           dry_run=dry_run, log=lambda _msg: None)  # fmt: skip
    return records[0]["result"]["value"] if records else None
