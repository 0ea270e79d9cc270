"""`cbp-jax post`, `cbp-jax rapt` and `cbp-jax table NAME`: shortcuts to the studies.

Every table is a study now (studies/<name>/, cli_study.py). `cbp-jax rapt ARGS` is
`cbp-jax study rapt run ARGS` (`post` likewise) and `cbp-jax table NAME ARGS` is
`cbp-jax study NAME run ARGS` for any study, NAME also its old script's name (rapt_table,
cbp_domains, ...); ARGS that start with one of the study's commands (`table`) go on as they
are. The benchmarks and tools left in experiments/ run as scripts (`python experiments/X.py`).
"""

from __future__ import annotations

from cbp_jax import cli_study

TABLE_VERBS = ("post", "rapt")  # the other studies are reached by `table NAME`
OLD_NAMES = {  # table scripts that became a study of another name (NAME_table: NAME)
    "cbp_domains": "cbp",
    "cbp_generator_spread": "generator_spread",
    "precision_check": "precision",
    "models_zero_shot": "models",
}


def dispatch(argv: list[str]) -> None:
    """`post ARGS`, `rapt ARGS` or `table NAME ARGS`, passed on untouched (a leading `--`
    dropped), so the study's own options need no declaring here."""
    verb, rest = argv[0], argv[1:]
    if verb == "table":
        if not rest:
            raise SystemExit(f"cbp-jax table NAME [ARGS]; studies: {cli_study.listing()}")
        verb, rest = rest[0], rest[1:]
    rest = rest[1:] if rest[:1] == ["--"] else rest
    name = OLD_NAMES.get(verb, verb.removesuffix("_table"))
    known = name in cli_study.study_names()
    commands = cli_study.constants(name).get("COMMANDS", ()) if known else ()
    cli_study.dispatch([name, *(rest if rest[:1] and rest[0] in commands else ["run", *rest])])


def table(args) -> None:
    dispatch([args.command, *([args.name] if args.command == "table" else []), *args.rest])


def add_parsers(sub) -> None:
    """The `post`, `rapt` and `table` subcommands (for --help; `dispatch` runs them)."""
    for verb in TABLE_VERBS:
        p = sub.add_parser(
            verb,
            help=f"the {verb.upper()} table (cbp-jax study {verb} run|table)",
            description=f"Run `cbp-jax study {verb} run` with the remaining arguments (e.g. "
            f"--quick, --set k=v; `table ...` runs nothing); `cbp-jax {verb} -- --help` lists "
            "them.",
        )
        p.add_argument("rest", nargs="*", help="arguments passed to the study")
        p.set_defaults(func=table)
    t = sub.add_parser(
        "table",
        help="a study's run or table: cbp-jax table NAME [ARGS]",
        description="Run `cbp-jax study NAME run ARGS` (or `study NAME table ...`), e.g. "
        "`cbp-jax table cbp table` or `cbp-jax table bbt -- --seeds 13`. Studies: "
        + ", ".join(cli_study.study_names()),
    )
    t.add_argument("name", help="a study (or its old script's name)")
    t.add_argument("rest", nargs="*", help="arguments passed to the study")
    t.set_defaults(func=table)
