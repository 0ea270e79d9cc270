"""A table's markdown from its records: new runs' report first, then its legacy numbers.

Shared by the table scripts in experiments/ (bbt, cbp*) and the studies (ablations, post,
rapt): each keeps its plan and report format, and this module keeps the records side the
same for all of them: `import_legacy` reads committed markdown into legacy records once
(`legacy.py`), `write_table` writes `<stem>.md` from the records only, so a fresh clone
regenerates it byte for byte, and `check_table` says whether the committed file is what the
records give.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from cbp_jax.experiment import legacy
from cbp_jax.experiment.records import RecordStore


@dataclasses.dataclass(frozen=True)
class LegacyTable:
    """One committed markdown table of legacy runs. budget: `legacy.budget_conversion(...)`
    of its black-box runs, None when they had no API budget."""

    stem: str
    budget: dict | None


def has_legacy(store: RecordStore, stem: str) -> bool:
    return f"legacy/{stem}/document" in store.records


def append_raw(store: RecordStore, rec: dict) -> None:
    """Append an already formed record (a legacy one) to the store's file."""
    if rec["name"] in store.records:
        raise ValueError(f"{store.path}: {rec['name']!r} is already recorded")
    store.path.parent.mkdir(parents=True, exist_ok=True)
    with store.path.open("a") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    store.records[rec["name"]] = rec


def import_legacy(store: RecordStore, table: LegacyTable, results: pathlib.Path,
                  root: pathlib.Path) -> int:  # fmt: skip
    """Import `<results>/<stem>.md` as legacy records unless already there; how many added."""
    if has_legacy(store, table.stem):
        return 0
    recs = legacy.import_markdown(results / f"{table.stem}.md", root, table.stem, table.budget)
    for rec in recs:
        append_raw(store, rec)
    return len(recs)


def render_table(store: RecordStore, stem: str, new_section: str = "") -> str:
    """`<stem>.md` from records: the new runs' section (if any), then the legacy table."""
    records = list(store.records.values())
    parts = [new_section.rstrip("\n") + "\n"] if new_section else []
    if has_legacy(store, stem):
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


def check_table(store: RecordStore, stem: str, results: pathlib.Path,
                new_section: str = "") -> bool:  # fmt: skip
    """Whether the committed `<stem>.md` is exactly what the records give."""
    return (results / f"{stem}.md").read_text() == render_table(store, stem, new_section)


def legacy_summary(store: RecordStore) -> dict[str, int]:
    """Records in a store by kind: legacy (imported) and new (run with the papers' unit)."""
    n_legacy = sum(1 for r in store.records.values() if r.get("legacy"))
    return {"legacy": n_legacy, "new": len(store.records) - n_legacy}


def get_or_run(store: RecordStore, cell, compute, *, dry_run: bool = False):
    """One cell's result value: its record's, else `compute()` run and recorded (None when
    dry_run and unrecorded). For scripts whose runs nest (a table's sub-runs share state), so
    each sub-run is its own cell; the value is stored as {"value": ...}."""
    from cbp_jax.experiment.layer import run_cells

    records, _ = run_cells([cell], store, lambda _config: {"value": compute()},
                           dry_run=dry_run, log=lambda _msg: None)  # fmt: skip
    return records[0]["result"]["value"] if records else None
