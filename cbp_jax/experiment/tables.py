"""A table's markdown from its records: new runs' report first, then its legacy numbers.

The records side every study's table shares: `write_table` writes a stem's table (`<stem>.md`,
or the study's own file name: `table.md`, `table_<variant>.md`) from the records only
(legacy records rendered by `legacy.py`), so a fresh clone regenerates it byte for byte;
`get_or_run` is one sub-run as a cell. The stem stays the records' key
(`legacy/<stem>/document`) whatever the file is called.
"""

from __future__ import annotations

import pathlib
import re

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


def renamed(text: str, renames: dict[str, str]) -> str:
    """`text` with each file name of `renames` (old -> new) replaced where it stands alone in
    backticks or a link (`old`, [old], (old)): legacy text naming a study's files by the
    names they had when it was written. A path (`dir/old`) is left as it was."""
    if not renames:
        return text
    names = "|".join(map(re.escape, sorted(renames, key=len, reverse=True)))
    return re.sub(rf"(?<=[`\[(])({names})(?=[`\])])", lambda m: renames[m[1]], text)


def write_table(store: RecordStore, stem: str, results: pathlib.Path, new_section: str = "",
                *, filename: str | None = None, renames: dict[str, str] | None = None
                ) -> pathlib.Path:  # fmt: skip
    """Write stem's table to results/filename (default `<stem>.md`), the file names in its
    text renamed by `renames` (see `renamed`)."""
    out = results / (filename or f"{stem}.md")
    out.write_text(renamed(render_table(store, stem, new_section), renames or {}))
    return out


def get_or_run(store: RecordStore, cell, compute, *, dry_run: bool = False):
    """One cell's result value: its record's, else `compute()` run and recorded (None when
    dry_run and unrecorded). For scripts whose runs nest (a table's sub-runs share state), so
    each sub-run is its own cell; the value is stored as {"value": ...}."""
    from cbp_jax.experiment.layer import run_cells

    records, _ = run_cells([cell], store, lambda _config: {"value": compute()},
                           dry_run=dry_run, log=lambda _msg: None)  # fmt: skip
    return records[0]["result"]["value"] if records else None
