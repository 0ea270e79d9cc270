"""Legacy records: the numbers of tables run before the papers' call unit, kept as records.

Tables made in the old unit (one API call = one candidate on ONE example) are not rerun:
their numbers were imported once from the committed markdown into the table's runs.jsonl,
marked `"legacy": true` with their `source` file and `commit`, cell by cell as text (nothing
recomputed; `numbers` repeats the figures parsed), and the table is rendered back from them
with each row marked and a note converting the budget to the papers' unit (`budget_note`).
Layout: `legacy/<stem>/document` (the file's lines, each table's body rows a `{{rows N}}`
marker), `legacy/<stem>/tN/<first cell>` per row, `legacy/<stem>/json/<task>` for the raw
per-seed numbers of a committed JSON file.
"""

from __future__ import annotations

import pathlib
import re

LEGACY_UNIT = "per-example (old)"
NO_CALLS = "none (no API-call budget)"
LEGACY_MARK = " (old unit)"
NO_BUDGET_MARK = " (legacy)"
_MARKER = re.compile(r"^\{\{rows (\d+)\}\}$")
_PLOT = re.compile(r"`([\w.-]+\.png)`")


def _row_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def budget_note(budget: dict | None, source: str, commit: str) -> list[str]:
    """The generated relabel: the legacy runs' budget in the old unit and the papers' unit."""
    unit = LEGACY_UNIT if budget is not None else NO_CALLS
    head = (
        f"> **Legacy records** (`{source}` at {commit[:12]}, imported into the run records "
        f"with `call_unit: {unit}`; rows marked"
    )
    if budget is None:
        return [f"{head} `{NO_BUDGET_MARK.strip()}`). These runs spent no black-box API "
                "calls (white-box methods, or no stage 2), so the call unit does not apply; "
                "the numbers are as they were.", ""]  # fmt: skip
    parts = budget.get("parts", {"": budget})
    text = " ".join(_budget_sentence(label, b) for label, b in parts.items())
    return [
        f"{head} `{LEGACY_MARK.strip()}`). {text} The numbers are as they were; they are not "
        "rerun.",
        "",
    ]


def _budget_sentence(label: str, budget: dict) -> str:
    n, p = budget["calls_old_unit"], budget["population"]
    per = "; ".join(
        f"{t}: B = {v['train_examples']}, <= {v['papers_calls_at_most']} calls, "
        f"<= {v['generations_at_most']} generations"
        for t, v in budget["per_task"].items()
    )
    return (
        f"{label}Budget {n} calls in the old unit (one candidate on one example) per "
        f"black-box run. In the papers' unit (one candidate on the whole k-shot train batch "
        f"of B examples) that is at most {n} // B calls, and at most {n} // ({p} x B) CMA-ES "
        f"generations at population {p}: {per}."
    )


def render(records: list[dict], stem: str) -> str:
    """The markdown of one legacy table from its records (document + rows, in row order)."""
    mine = [r for r in records if r.get("legacy") and r["config"].get("table") == stem]
    docs = [r for r in mine if r["name"] == f"legacy/{stem}/document"]
    if len(docs) != 1:
        raise ValueError(f"{stem}: {len(docs)} legacy document records (want 1)")
    doc = docs[0]
    budget = doc["result"]["budget"]
    mark = NO_BUDGET_MARK if budget is None else LEGACY_MARK
    rows: dict[int, list[dict]] = {}
    table_rows = (r for r in mine if "part" in r["config"])  # not raw (JSON) records
    for r in sorted(table_rows, key=lambda r: r["config"]["row"]):
        rows.setdefault(r["config"]["part"], []).append(r)
    out = []
    for k, line in enumerate(doc["result"]["lines"]):
        if m := _MARKER.match(line):
            for r in rows.get(int(m.group(1)), ()):
                cells = list(r["result"]["cells"])
                cells[0] += mark
                out.append(_row_line(cells))
            continue
        out.append(line)
        if k == 0:  # after the title
            out += [""] + budget_note(budget, doc["source"], doc["commit"])[:-1]
            out += kept_note(stem, doc["result"]["lines"], records) + plots_note(
                doc["result"]["lines"], records
            )
    text = "\n".join(out)
    return text + "\n" if doc["result"]["trailing_newline"] else text


def kept_note(stem: str, lines: list[str], records: list[dict]) -> list[str]:
    """What the legacy records hold: the cells only, or raw per-seed numbers as well (raw
    records of this table, or of the JSON files its text names)."""
    text = "\n".join(lines)
    raw = sorted(
        r["source"]
        for r in records
        if "/json/" in r["name"]
        and (r["config"].get("table") == stem or f"`{pathlib.Path(r['source']).name}`" in text)
    )
    raw = sorted(set(raw))
    if raw:
        return [">", f"> Kept: each cell as shown, and the per-seed numbers of {_ticks(raw)}."]
    return [">", "> Kept: each cell as shown; the per-seed results behind the means were not "
            "committed, so nothing here is recomputed from them."]  # fmt: skip


def plots_note(lines: list[str], records: list[dict]) -> list[str]:
    """Which of the plots the legacy document names are redrawn from raw legacy records
    (a `legacy/<plot stem>/json/...` record) and which stay the committed images."""
    names = sorted(set(_PLOT.findall("\n".join(lines))))
    if not names:
        return []
    raw = {r["config"].get("table") for r in records if "/json/" in r["name"]}
    redrawn = [n for n in names if n.removesuffix(".png") in raw]
    kept = [n for n in names if n not in redrawn]
    text = []
    if redrawn:
        text.append(f"{_ticks(redrawn)} redrawn from the raw legacy records (the committed JSON).")
    if kept:
        text.append(f"{_ticks(kept)}: the image(s) committed with those runs; the data behind "
                    "them were not recorded, so they are not redrawn from records.")  # fmt: skip
    return [">", "> Plots: " + " ".join(text)]


def _ticks(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
