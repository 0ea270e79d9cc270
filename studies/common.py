"""What the studies' drivers and reports share: the `run|table` parser, the command a table
names, the folder's file names, markdown rows and pyplot."""

from __future__ import annotations

import argparse
import shlex


def parser(description: str, commands, results, **kw) -> argparse.ArgumentParser:
    """A study's parser: its command, then `--results` (records and tables; default beside
    the study)."""
    p = argparse.ArgumentParser(description=description, **kw)
    p.add_argument("command", choices=commands)
    p.add_argument("--results", default=str(results), help="records and tables live here")
    return p


def command(study: str, args: list[str], verb: str = "run") -> str:
    """The `cbp-jax study STUDY VERB ARGS` line a table names."""
    return (f"cbp-jax study {study} {verb} " + shlex.join(args)).strip()


def layout(kind: str, stem: str, study: str, ext: str) -> str:
    """A table stem's file in its study's folder, one layout for all (studies/README.md):
    `<kind><ext>` for the study's own stem, `<kind>_<variant><ext>` for `<study>_<variant>`
    or another stem (table.md, runs_budget8000.jsonl for cbp_budget8000, table_published.md).
    The stem itself stays the records' key."""
    variant = "" if stem == study else stem.removeprefix(f"{study}_")
    return f"{kind}_{variant}{ext}" if variant else f"{kind}{ext}"


def row(*cells) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def header(*names) -> list[str]:
    """A markdown table's first two lines."""
    return [row(*names), "|" + "---|" * len(names)]


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
