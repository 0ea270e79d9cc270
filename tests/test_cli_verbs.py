"""One command line: `cbp-jax --help` lists every verb; `cbp-jax run` is `python -m
cbp_jax.run`; `post`, `rapt` and `table` pass their arguments on to a study."""

from __future__ import annotations

import pathlib

import pytest

from cbp_jax import cli, cli_study
from cbp_jax import run as run_mod

VERBS = ("run", "zero-shot", "train-generator", "customize", "predict", "serve", "post", "rapt")


def test_help_lists_every_verb(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for verb in (*VERBS, "table"):
        assert verb in out


def test_run_verb_builds_the_same_config_as_the_module(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(run_mod, "run", lambda cfg, **_: seen.append(cfg) or {"test_acc": 0.5})
    monkeypatch.setattr(run_mod, "execute", lambda args, command: seen.append((args, command)))
    argv = ["--task", "sst2", "--method", "zero_shot", "--seed", "3", "--test-size", "8"]
    cli.main(["run", *argv])
    args, command = seen.pop()
    fields = {k: v for k, v in vars(args).items() if k not in ("func", "command")}
    assert fields == vars(run_mod.parser().parse_args(argv))
    assert command.startswith("cbp-jax ")


def test_table_verbs_pass_arguments_on(monkeypatch):
    calls = []
    monkeypatch.setattr(cli_study, "dispatch", lambda argv: calls.append(argv))
    cli.main(["post", "--quick", "--set", "tune.epochs=1"])
    cli.main(["rapt", "--", "--quick"])
    cli.main(["rapt", "table", "--set", "epochs=10"])
    cli.main(["table", "rapt_table", "--quick"])
    cli.main(["table", "bbt_table", "--seeds", "13"])
    cli.main(["table", "cbp_domains", "table"])
    cli.main(["table", "precision_check", "table", "--model", "gemma3-270m"])
    assert calls == [
        ["post", "run", "--quick", "--set", "tune.epochs=1"],
        ["rapt", "run", "--quick"],
        ["rapt", "table", "--set", "epochs=10"],
        ["rapt", "run", "--quick"],
        ["bbt", "run", "--seeds", "13"],
        ["cbp", "table"],
        ["precision", "table", "--model", "gemma3-270m"],
    ]


def test_table_of_an_unknown_study_names_the_known_ones(monkeypatch):
    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[1])
    with pytest.raises(SystemExit, match="no study 'bench_sweep'; known: .*rapt"):
        cli.main(["table", "bench_sweep", "--quick"])
