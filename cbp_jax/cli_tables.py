"""`cbp-jax post`, `cbp-jax rapt` and `cbp-jax table NAME`: the tables' commands.

`post` and `rapt` are studies (studies/<name>/, cli_study.py): `cbp-jax rapt ARGS` is
`cbp-jax study rapt run ARGS` (or `study rapt table ...` when ARGS starts with a command).
`table NAME` runs a study the same way (NAME, or its old script's name), else the script
`experiments/NAME.py` of a checkout (the current directory's, else the one beside the
installed package) with the remaining arguments, as `python experiments/NAME.py ARGS`.
"""

from __future__ import annotations

import pathlib
import runpy
import sys

import cbp_jax
from cbp_jax import cli_study

# verbs of a study's table (the other tables are reached by `table NAME`)
TABLE_VERBS = ("post", "rapt")
OLD_NAMES = {"cbp_domains": "cbp"}  # scripts that became a study of another name


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


def run_study(name: str, argv: list[str]) -> None:
    """`cbp-jax study NAME ARGV`, with `run` first unless ARGV starts with a command."""
    commands = cli_study.constants(name).get("COMMANDS", ())
    cli_study.dispatch([name, *(argv if argv[:1] and argv[0] in commands else ["run", *argv])])


def dispatch(argv: list[str]) -> None:
    """`post ARGS`, `rapt ARGS` or `table NAME ARGS`, passed on untouched (a leading `--`
    dropped), so the study's or script's own options need no declaring here."""
    verb, rest = argv[0], argv[1:]
    if verb == "table":
        if not rest:
            raise SystemExit(f"cbp-jax table NAME [ARGS]; scripts: {', '.join(table_names())}")
        verb, rest = rest[0], rest[1:]
    rest = rest[1:] if rest[:1] == ["--"] else rest
    study = OLD_NAMES.get(verb, verb.removesuffix("_table"))
    if study in cli_study.study_names():
        run_study(study, rest)
    else:
        run_script(verb, rest)


def table(args) -> None:
    dispatch([args.command, *([args.name] if args.command == "table" else []), *args.rest])


def add_parsers(sub) -> None:
    """The `post`, `rapt` and `table` subcommands (for --help; `dispatch` runs them)."""

    def make(name, help, description):
        return sub.add_parser(name, help=help, description=description)

    for verb in TABLE_VERBS:
        p = make(
            verb,
            f"the {verb.upper()} table (cbp-jax study {verb} run|table)",
            f"Run `cbp-jax study {verb} run` with the remaining arguments (e.g. --quick, "
            f"--set k=v; `table ...` runs nothing); `cbp-jax {verb} -- --help` shows them.",
        )
        p.add_argument("rest", nargs="*", help="arguments passed to the script")
        p.set_defaults(func=table)
    t = make(
        "table",
        "a study or an experiment's table script: cbp-jax table NAME [ARGS]",
        "Run the study NAME (as `cbp-jax study NAME run ARGS`) or experiments/NAME.py with "
        "ARGS, e.g. `cbp-jax table cbp` or `cbp-jax table bbt -- --seeds 13`. Studies: "
        + ", ".join(cli_study.study_names())
        + "; scripts: "
        + ", ".join(table_names()),
    )
    t.add_argument("name", help="a study, or a script under experiments/ (without .py)")
    t.add_argument("rest", nargs="*", help="arguments passed to the script")
    t.set_defaults(func=table)
