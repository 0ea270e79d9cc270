"""`cbp-jax study`: the studies of the checkout are listed, indexed and dispatched.

The index (studies/README.md) is regenerated from the studies and compared byte for byte with
the committed one; each study declares its question, answer and commands as literals; an
unknown study or command is refused with the known names. (Table bytes through
`cbp-jax study paper_budget table`: tests/test_table_records.py; `run --ray`:
tests/test_ray_runner.py.)
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from cbp_jax import cli_study
from cbp_jax.cli import main as cli_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_study_declares_its_question_answer_and_commands():
    names = cli_study.study_names(ROOT)
    assert {"paper_budget", "cluster"} <= set(names)
    for name in names:
        c = cli_study.constants(name, ROOT)
        assert isinstance(c.get("QUESTION"), str) and c["QUESTION"].endswith("?"), name
        assert isinstance(c.get("ANSWER"), str) and "\n" not in c["ANSWER"], name
        commands = c.get("COMMANDS") or ()
        assert "run" in commands, name  # and the study's own (post: student, published)
        assert all(x.isidentifier() and x.islower() for x in commands), name
        assert callable(cli_study.load(name).main), name


def test_the_index_regenerates_byte_for_byte(tmp_path):
    (tmp_path / "studies").mkdir()
    shutil.copy(ROOT / "studies" / "__init__.py", tmp_path / "studies")
    for name in cli_study.study_names(ROOT):
        (tmp_path / "studies" / name).mkdir()
        for f in ["study.py", *(p.name for p in (ROOT / "studies" / name).glob("*runs*.jsonl"))]:
            shutil.copy(ROOT / "studies" / name / f, tmp_path / "studies" / name / f)
    out = cli_study.write_index(tmp_path)
    assert out.read_text() == (ROOT / "studies" / "README.md").read_text()


def test_listing_and_status_need_no_import_of_the_study(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cli_main(["study", "--help"])
    listing = capsys.readouterr().out
    for name in cli_study.study_names(ROOT):
        assert name in listing and cli_study.constants(name, ROOT)["QUESTION"] in listing
    cli_main(["study", "cluster", "status"])  # no status of its own: its record count
    records = sum(
        len(p.read_text().splitlines()) for p in (ROOT / "studies/cluster").glob("*runs*.jsonl")
    )
    assert capsys.readouterr().out.startswith(f"cluster: {records} records")


def test_an_unknown_study_or_command_is_refused_with_the_known_ones(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="no study 'nope'; known: .*paper_budget"):
        cli_main(["study", "nope", "run"])
    with pytest.raises(SystemExit):
        cli_main(["study", "cluster", "table"])  # cluster's main takes run only
    assert "invalid choice: 'table'" in capsys.readouterr().err


def test_a_checkout_without_studies_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_study.cbp_jax, "__file__", str(tmp_path / "pkg" / "__init__.py"))
    with pytest.raises(SystemExit, match="no studies/ here"):
        cli_study.checkout()
