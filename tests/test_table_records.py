"""The studies' tables regenerate byte for byte from their committed records (no model runs).

Each study's `table` writes its markdown (table.md, table_<variant>.md) from its records
(runs.jsonl, runs_<variant>.jsonl) only; the runs made before
the papers' call unit are legacy records, rendered with their old-unit mark and a budget note
in the papers' unit. (A changed config
being refused is tested in test_experiment_layer.py.)
"""

from __future__ import annotations

import importlib
import json
import pathlib

import pytest

from cbp_jax import cli_study
from cbp_jax.experiment import legacy, tables
from cbp_jax.experiment.records import RecordStore
from studies.common import layout

ROOT = pathlib.Path(__file__).resolve().parents[1]
STUDIES = ROOT / "studies"


# study -> the stems `cbp-jax study NAME table [--stem STEM]` writes a table of from its
# records (table_<variant>.md from runs_<variant>.jsonl each, but ablations: one store), each
# with the arguments of the run it names on its first `Command:` line (it grows as cells run;
# none: legacy records only)
CBP = ("cbp", "cbp_budget8000", "cbp_budget8000_held_out", "cbp_budget8000_margin2",
       "cbp_budget8000_natural", "cbp_gpu", "cbp_natural_held_out", "cbp_permuted_held_out",
       "cbp_sentiment", "cbp_task_vectors")  # fmt: skip
ABLATIONS = ("ablations_gpu_sigma", "ablations_gpu_population", "ablations_cpu_dims", "ablations")
STUDY_TABLES = {"rapt": ("rapt",), "post": ("post",), "ablations": ABLATIONS, "bbt": ("bbt",),
                "cbp": CBP, "generator_spread": ("cbp_generator_spread",)}  # fmt: skip
STEMS = [(s, t) for s, ts in STUDY_TABLES.items() for t in ts]


def _own(study: str) -> str:
    """The stem a study's own files (table.md, runs.jsonl) have: generator_spread's one table
    keeps the stem cbp_generator_spread."""
    return "cbp_generator_spread" if study == "generator_spread" else study


def _records(study: str, stem: str) -> pathlib.Path:
    name = "runs.jsonl" if study == "ablations" else layout("runs", stem, _own(study), ".jsonl")
    return STUDIES / study / name


def _table(study: str, stem: str) -> pathlib.Path:
    return STUDIES / study / layout("table", stem, _own(study), ".md")


@pytest.mark.parametrize("name,stem", STEMS)
def test_study_table_regenerates_byte_identically(name, stem, tmp_path):
    from cbp_jax.cli import main as cli_main

    records, md = _records(name, stem), _table(name, stem)
    assert RecordStore(records).records, f"{records.name} has no records"
    (tmp_path / records.name).write_text(records.read_text())  # all it may read
    args = cli_study.committed_run(md, name)  # rapt and post default to theirs
    args += ["--stem", stem] if len(STUDY_TABLES[name]) > 1 else []
    cli_main(["study", name, "table", *args, "--results", str(tmp_path)])
    assert (tmp_path / md.name).read_text() == md.read_text()


@pytest.mark.parametrize("script,stem", STEMS)
def test_legacy_records_are_marked_and_sourced(script, stem):
    store = RecordStore(_records(script, stem))
    old = [r for r in store.records.values() if r.get("legacy") and r["config"]["table"] == stem]
    assert old, f"{stem}: no legacy records"
    renamed = importlib.import_module(f"studies.{script}.study").RENAMED
    for r in old:
        assert r["call_unit"] in (legacy.LEGACY_UNIT, legacy.NO_CALLS)
        name = pathlib.Path(r["source"]).name
        moved = STUDIES / script / renamed.get(name, name)  # moved with its study, renamed
        assert (ROOT / r["source"]).exists() or moved.exists(), r["source"]
        assert r["commit"] not in ("unknown", "uncommitted")


def test_legacy_rows_are_rendered_with_their_mark_and_budget():
    """Black-box runs: the old-unit mark and their budget in the papers' unit; white-box runs
    (no API calls): the legacy mark and no conversion."""
    bbt = list(RecordStore(STUDIES / "bbt" / "runs.jsonl").records.values())
    text = legacy.render(bbt, "bbt")
    assert "| BBT (old unit) | 0.7332" in text and "per-example (old)" in text
    assert "sst2: B = 32, <= 375 calls, <= 18 generations" in text
    rapt = list(RecordStore(STUDIES / "rapt" / "runs.jsonl").records.values())
    text = legacy.render(rapt, "rapt")
    assert "| zero-shot (legacy) | 0.718" in text and "call unit does not apply" in text
    assert "(old unit)" not in text


def test_ablation_json_records_give_the_tables_cells():
    """The raw per-seed legacy numbers (from the committed JSON) reproduce each table cell."""
    import numpy as np

    store = RecordStore(STUDIES / "ablations" / "runs.jsonl")
    raw = [r for r in store.records.values() if "/json/" in r["name"]]
    assert len(raw) == 3
    for rec in raw:
        stem, task = rec["config"]["table"], rec["config"]["task"]
        rows = {r["result"]["cells"][0]: r["result"]["cells"][1] for r in store.records.values()
                if r["config"].get("table") == stem and "part" in r["config"]}  # fmt: skip
        for sweep in rec["config"]["sweeps"]:
            for point in rec["result"][sweep]:
                acc = np.array(point["test_acc"])
                want = f"{acc.mean():.3f} ± {acc.std():.3f} ({point['generations']})"
                assert rows[str(point["value"])] == want, (stem, task, point["value"])
                assert point["calls_per_run"] == rec["config"]["budget_per_run"]


def test_cbp_report_reads_new_runs_from_records_only(tmp_path):
    """A new (papers'-unit) run is a record of a repo-relative cell; the report shows it."""
    from cbp_jax.experiment.layer import run_cells
    from studies.cbp import report
    from studies.cbp import study as cbp

    cfg = cbp.SweepConfig(
        domains=("financial",), leave_one_out=(), seeds=(0,), methods=("zero_shot", "bbt", "cbp")
    )
    cells = cbp.cells(cfg)
    assert [c.name for c in cells] == [
        "financial_phrasebank/zero_shot/seed0",
        "financial_phrasebank/bbt/seed0",
        "financial_phrasebank/cbp-financial/seed0",
    ]
    assert all(not c.config.out.startswith("/") for c in cells)  # the same in any clone
    assert cells[2].config.generator == "checkpoints/cbp_domains/generators/financial/generator"
    store = RecordStore(tmp_path / "x_runs.jsonl")
    fake = {"test_acc": 0.625, "test_acc_z0": 0.5, "history": [], "generations": 20, "calls": 400}
    records, progress = run_cells(cells, store, lambda rc: dict(fake), log=lambda m: None)
    assert progress.ran == 3
    report.use_records(records)
    text = report.table(cfg, "cmd")
    assert (
        "| financial_phrasebank | 62.5 ± 0.0 | 62.5 ± 0.0 | not run | not run | 50.0 ± 0.0 |"
        in text
    )
    assert "Runs finished: 3 of 3 planned" in text and "papers' unit" in text
    report.use_records([])


def test_bbt_table_runs_missing_cells_into_records_then_reuses_them(tmp_path, monkeypatch):
    """run -> record -> table: a new run is appended, shown above the legacy rows, not rerun."""
    from cbp_jax import run as run_mod
    from studies.bbt import study as mod

    (tmp_path / "runs.jsonl").write_text((STUDIES / "bbt" / "runs.jsonl").read_text())
    ran = []
    hist = [{"calls": 20 * g, "loss_mean": 1.0, "dev_loss": 0.9} for g in (1, 2)]

    def fake_run(rc, **_):
        ran.append(rc)
        return {"test_acc": 0.75, "dev_acc": 0.5, "calls": 400, "seconds": 3.0, "history": hist}

    monkeypatch.setattr(run_mod, "run", fake_run)
    argv = ["run", "--seeds", "13", "--methods", "bbt", "--results", str(tmp_path)]
    mod.main(argv)
    mod.main(argv)  # recorded: nothing reruns
    assert len(ran) == 1 and ran[0].budget == 8000
    text = (tmp_path / "table.md").read_text()
    assert text.index("| BBT | 0.7500 | - | 0.750 | 0.5000 | 400 | 3 |") < text.index(
        "| BBT (old unit) | 0.7332"
    )
    assert (tmp_path / "calls_curve_sst2.png").exists()
    store = RecordStore(tmp_path / "runs.jsonl")
    legacy = sum(1 for r in store.records.values() if r.get("legacy"))
    assert (legacy, len(store.records) - legacy) == (5, 1)


def test_get_or_run_records_a_sub_run_once(tmp_path):
    """RAPT's sub-runs: each its own cell, computed once, read back by a fresh store."""
    from cbp_jax.experiment.records import Cell, RecordMismatchError

    path, calls = tmp_path / "r_runs.jsonl", []
    cell = Cell("sst2/seed13/zero-shot", {"task": "sst2", "seed": 13, "arm": "zero-shot"})
    compute = lambda: calls.append(1) or 0.718  # noqa: E731
    assert tables.get_or_run(RecordStore(path), cell, compute) == 0.718
    assert tables.get_or_run(RecordStore(path), cell, compute) == 0.718
    assert len(calls) == 1
    other = Cell("sst2/seed13/eta40/lora", {"arm": "lora"})
    assert tables.get_or_run(RecordStore(path), other, compute, dry_run=True) is None
    changed = Cell(cell.name, {**cell.config, "seed": 14})
    with pytest.raises(RecordMismatchError, match="seed"):
        tables.get_or_run(RecordStore(path), changed, compute)


def test_models_table_regenerates_from_its_record(tmp_path, monkeypatch):
    from studies.models import study as mod

    md = STUDIES / "models" / "table.md"
    (tmp_path / "table.md").write_text(md.read_text().replace(mod.BEGIN, mod.BEGIN + "\nstale"))
    mod.write_table(json.loads((md.parent / "runs.json").read_text()), tmp_path / "table.md")
    assert (tmp_path / "table.md").read_text() == md.read_text()


@pytest.mark.parametrize(
    "model_args", [[], ["--model", "gemma3-270m", "--columns", "zero_shot,bbt,cbp_z0,cbp"]]
)
def test_paper_budget_reports_regenerate_from_their_records(model_args, tmp_path):
    from cbp_jax.cli import main as cli_main

    study = pathlib.Path(__file__).resolve().parents[1] / "studies" / "paper_budget"
    suffix = f"_{model_args[1]}" if model_args else ""
    records = study / f"runs{suffix}.jsonl"
    (tmp_path / records.name).write_text(records.read_text())
    if model_args:  # another model's report sets its means beside the default model's
        default = study / "runs.jsonl"
        (tmp_path / default.name).write_text(default.read_text())
    cli_main(["study", "paper_budget", "table", "--results", str(tmp_path), *model_args])
    table = f"table{suffix}.md"
    assert (tmp_path / table).read_text() == (study / table).read_text()


@pytest.mark.parametrize("model_args", [[], ["--model", "gemma3-270m"]])
def test_precision_check_reports_regenerate_from_their_records(model_args, tmp_path):
    from cbp_jax.cli import main as cli_main

    suffix = f"_{model_args[1]}" if model_args else ""
    records = STUDIES / "precision" / f"runs{suffix}.jsonl"
    (tmp_path / records.name).write_text(records.read_text())
    cli_main(["study", "precision", "table", *model_args, "--results", str(tmp_path)])
    table = f"table{suffix}.md"
    assert (tmp_path / table).read_text() == (records.parent / table).read_text()


def test_es_vs_pycma_table_regenerates_from_its_record(tmp_path):
    from cbp_jax.cli import main as cli_main

    record = STUDIES / "es_vs_pycma" / "runs.jsonl"
    (tmp_path / record.name).write_text(record.read_text())  # all it may read
    cli_main(["study", "es_vs_pycma", "table", "--results", str(tmp_path)])
    assert (tmp_path / "es_vs_pycma.md").read_text() == (
        record.parent / "es_vs_pycma.md"
    ).read_text()
