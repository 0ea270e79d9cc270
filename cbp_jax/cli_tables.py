"""`cbp-jax post`, `cbp-jax rapt` and `cbp-jax table NAME`: the experiments' table commands.

The tables are scripts under `experiments/` of a checkout (they write into
`experiments/results/`); these verbs find that folder (the current directory's, else the
one beside the installed package) and run the script's `main` with the remaining
arguments, so `cbp-jax post --quick` is `python experiments/post_table.py --quick`.
"""

from __future__ import annotations

import pathlib
import runpy
import sys

import cbp_jax

# verb -> script under experiments/ (the other table scripts are reached by `table NAME`)
TABLE_VERBS = {"post": "post_table", "rapt": "rapt_table"}


def experiments_dir() -> pathlib.Path:
    """experiments/ of the current directory, or of the checkout holding this package."""
    for root in (pathlib.Path.cwd(), pathlib.Path(cbp_jax.__file__).resolve().parents[1]):
        if (root / "experiments").is_dir():
            return root / "experiments"
    raise SystemExit("cbp-jax: no experiments/ folder here or beside the package (a checkout)")


def table_names() -> list[str]:
    """The scripts `cbp-jax table` can run (every experiments/*.py with a main)."""
    try:
        folder = experiments_dir()
    except SystemExit:
        return []
    return sorted(
        p.stem for p in folder.glob("*.py") if "def main(" in p.read_text(errors="ignore")
    )


def run_script(name: str, argv: list[str]) -> None:
    """Run experiments/<name>.py as `python experiments/<name>.py ARGV`."""
    path = experiments_dir() / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"cbp-jax table: no script {path}; known: {', '.join(table_names())}")
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        runpy.run_path(str(path), run_name="__main__")
    finally:
        sys.argv = saved


def dispatch(argv: list[str]) -> None:
    """`post ARGS`, `rapt ARGS` or `table NAME ARGS`, passed on untouched (a leading `--`
    dropped), so the script's own options need no declaring here."""
    verb, rest = argv[0], argv[1:]
    if verb == "table":
        if not rest:
            raise SystemExit(f"cbp-jax table NAME [ARGS]; scripts: {', '.join(table_names())}")
        name, rest = rest[0], rest[1:]
    else:
        name = TABLE_VERBS[verb]
    run_script(name, rest[1:] if rest[:1] == ["--"] else rest)


def table(args) -> None:
    dispatch([args.command, *([args.name] if args.command == "table" else []), *args.rest])


def add_parsers(sub) -> None:
    """The `post`, `rapt` and `table` subcommands (for --help; `dispatch` runs them)."""

    def make(name, help, description):
        return sub.add_parser(name, help=help, description=description)

    for verb, script in TABLE_VERBS.items():
        p = make(
            verb,
            f"the {verb.upper()} table (python experiments/{script}.py)",
            f"Run experiments/{script}.py with the remaining arguments (e.g. --quick, "
            f"--set k=v); `cbp-jax {verb} -- --help` shows the script's own options.",
        )
        p.add_argument("rest", nargs="*", help="arguments passed to the script")
        p.set_defaults(func=table)
    t = make(
        "table",
        "an experiment's table script: cbp-jax table NAME [ARGS]",
        "Run experiments/NAME.py with ARGS, e.g. `cbp-jax table cbp_domains all` or "
        "`cbp-jax table bbt_table -- --seeds 13`. Scripts: " + ", ".join(table_names()),
    )
    t.add_argument("name", help="script name under experiments/ (without .py)")
    t.add_argument("rest", nargs="*", help="arguments passed to the script")
    t.set_defaults(func=table)
