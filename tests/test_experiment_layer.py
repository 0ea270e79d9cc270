"""The experiment layer: run identity by config hash, committed records that refuse changed
configs (naming the fields), byte-identical reports from records, budget curves from one run."""

import dataclasses
import json
import shutil
import time

import jax
import numpy as np
import pytest

from cbp_jax.data.batching import Inputs
from cbp_jax.experiment.identity import config_diff, config_hash
from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.records import Cell, RecordMismatchError, RecordStore
from cbp_jax.methods.bbt import bbt_parameterization
from cbp_jax.methods.blackbox import BlackBoxConfig, run_blackbox
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.precision import machine_info
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.projection import ProjectionConfig
from cbp_jax.run import RunConfig, record_defaults
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import NoPrompt, SoftPrompt
from studies.paper_budget.plan import (
    LABELS,
    SHIPPED_FINANCIAL,
    PaperBudgetConfig,
    generators_for,
)
from studies.paper_budget.report import _timed_seconds, cell_key, write_report


def test_identity_is_the_config_not_the_path():
    a = RunConfig(task="sst2", method="bbt", seed=1, out="/tmp/a")
    b = dataclasses.replace(a, out="/elsewhere")
    assert a.identity() == b.identity()  # where a run is written is not what it is
    assert a.run_dir.name == f"seed1-{a.identity()[:8]}" and a.run_dir.parent.name == "bbt"
    for change in ({"budget": 4000}, {"shots": 8}, {"dtype": "float32"}, {"p0_offset": -1}):
        assert dataclasses.replace(a, **change).identity() != a.identity(), change
    assert config_hash({"x": 1, "y": [1, 2]}) == config_hash({"y": [1, 2], "x": 1})
    assert config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == {"b": (2, 3), "c": (None, 4)}


def test_record_with_a_changed_field_is_refused_naming_it(tmp_path):
    path = tmp_path / "t_runs.jsonl"
    cell = Cell("sst2/bbt/seed0", RunConfig(task="sst2", method="bbt", seed=0))
    RecordStore(path).append(cell, {"test_acc": 0.5}, commit="abc", dtype="bfloat16")
    again = RecordStore(path)  # a fresh process reads the committed file
    assert again.get(cell)["result"] == {"test_acc": 0.5}
    assert again.get(cell)["dtype"] == "bfloat16" and again.get(cell)["commit"] == "abc"
    changed = Cell(cell.name, dataclasses.replace(cell.config, budget=2000, shots=4))
    with pytest.raises(RecordMismatchError, match=r"budget: recorded 8000, planned 2000") as e:
        again.get(changed)
    assert "shots: recorded 16, planned 4" in str(e.value)
    with pytest.raises(ValueError, match="already recorded"):
        again.append(cell, {}, commit="x", dtype="float32")


def test_two_processes_on_one_record_file_keep_one_record_per_run(tmp_path):
    """A second store (another process) sees records appended after it read the file, and a
    run it finished too late keeps the first record instead of writing a duplicate."""
    path = tmp_path / "t_runs.jsonl"
    cell = Cell("sst2/bbt/seed0", RunConfig(task="sst2", method="bbt", seed=0))
    other = Cell("sst2/bbt/seed1", RunConfig(task="sst2", method="bbt", seed=1))
    first, second = RecordStore(path), RecordStore(path)
    first.append(cell, {"test_acc": 0.5}, commit="a", dtype="bfloat16")
    assert second.get(cell)["result"] == {"test_acc": 0.5}
    late = RecordStore(tmp_path / "t_runs.jsonl")
    first.append(other, {"test_acc": 0.7}, commit="a", dtype="bfloat16")
    kept = late.append(other, {"test_acc": 0.1}, commit="b", dtype="float32")
    assert kept["result"] == {"test_acc": 0.7}
    names = [json.loads(x)["name"] for x in path.read_text().splitlines()]
    assert names == [cell.name, other.name]


def test_a_field_added_later_counts_at_its_default(tmp_path):
    path = tmp_path / "t_runs.jsonl"
    cell = Cell("c", RunConfig(method="zero_shot"))
    rec = RecordStore(path).append(cell, {"test_acc": 0.1}, commit="a", dtype="float32")
    rec["config"].pop("curve")  # as if recorded before RunConfig had `curve`
    rec["id"] = config_hash(rec["config"])
    path.write_text(json.dumps(rec) + "\n")
    assert RecordStore(path, defaults=record_defaults).get(cell)["result"] == {"test_acc": 0.1}
    with pytest.raises(RecordMismatchError, match="curve"):
        RecordStore(path, defaults=record_defaults).get(
            Cell("c", RunConfig(method="zero_shot", curve="5"))
        )


def _record_without_p0(path, config):
    """A record as written before RunConfig had `p0` (BBT then ran with p0 = the ids)."""
    cell = Cell("c", config)
    rec = RecordStore(path).append(cell, {"test_acc": 0.3}, commit="a", dtype="float32")
    rec["config"].pop("p0")
    rec["id"] = config_hash(rec["config"])
    path.write_text(json.dumps(rec) + "\n")


@pytest.mark.parametrize("defaults", [None, record_defaults, {"p0": "words"}])
def test_an_old_bbt_record_without_p0_is_an_ids_run_not_a_words_run(tmp_path, defaults):
    """A BBT record lacking `p0` ran with the model's own ids: it matches p0="ids" and is
    refused for p0="words" (today's default), whatever defaults the store was given (a
    RunConfig cell brings its own, `RunConfig.record_defaults`); its run dir is unmoved."""
    path = tmp_path / "t_runs.jsonl"
    old = RunConfig(method="bbt", p0="ids")
    _record_without_p0(path, old)
    store = RecordStore(path, defaults=defaults)
    assert store.get(Cell("c", old))["result"] == {"test_acc": 0.3}
    with pytest.raises(RecordMismatchError, match="p0: recorded 'ids', planned 'words'"):
        store.get(Cell("c", RunConfig(method="bbt")))
    # a zero-p0 record (p0_offset -1) is p0="ids" with that offset
    zero = dataclasses.replace(old, method="bbtv2", p0_offset=-1)
    _record_without_p0(tmp_path / "z_runs.jsonl", zero)
    assert RecordStore(tmp_path / "z_runs.jsonl").get(Cell("c", zero))["result"] == {
        "test_acc": 0.3
    }
    assert record_defaults({"method": "bbt"})["p0"] == "ids"
    # the identity of an ids run is the pre-p0 one; a words run is a new run
    fields = {k: v for k, v in dataclasses.asdict(old).items() if k not in ("out", "p0")}
    assert old.identity() == config_hash(fields)
    assert RunConfig(method="bbt").identity() != old.identity()


def test_an_old_record_of_a_method_without_p0_keeps_matching(tmp_path):
    """zero_shot / CBP have no p0: their records lacking it count at today's default."""
    path = tmp_path / "t_runs.jsonl"
    _record_without_p0(path, RunConfig(method="zero_shot"))
    store = RecordStore(path, defaults=record_defaults)
    assert store.get(Cell("c", RunConfig(method="zero_shot")))["result"] == {"test_acc": 0.3}
    fields = dataclasses.asdict(RunConfig(method="zero_shot"))
    fields = {k: v for k, v in fields.items() if k not in ("out", "p0")}
    assert RunConfig(method="zero_shot").identity() == config_hash(fields)


def test_run_cells_runs_only_what_has_no_record(tmp_path):
    cells = [Cell(f"c{i}", RunConfig(method="zero_shot", seed=i)) for i in range(3)]
    ran = []

    def runner(rc):
        ran.append(rc.seed)
        return {"test_acc": rc.seed / 10, "dtype": {"dtype": "float32"}, "commit": "c"}

    store = RecordStore(tmp_path / "r.jsonl")
    recs, prog = run_cells(cells, store, runner, only=lambda c: c.name != "c1", log=lambda _: 0)
    assert ran == [0, 2] and [r["name"] for r in recs] == ["c0", "c2"] and prog.skipped == 1
    recs, prog = run_cells(cells, RecordStore(tmp_path / "r.jsonl"), runner, log=lambda _: 0)
    assert ran == [0, 2, 1] and prog.reused == 2 and prog.ran == 1
    assert [r["result"]["test_acc"] for r in recs] == [0.0, 0.1, 0.2]
    # each new record says how long it ran and on which backend; a runner's own figure wins
    assert all(
        r["result"]["seconds"] >= 0 and r["result"]["device"] == jax.default_backend() for r in recs
    )
    timed = [Cell("t", RunConfig(method="zero_shot", seed=9))]
    (rec,), _ = run_cells(timed, store, lambda rc: {"seconds": 42.0}, log=lambda _: 0)
    assert rec["result"]["seconds"] == 42.0
    # CPU seconds leave out time the process waited (here asleep; in a long run, stopped)
    napping = [Cell("n", RunConfig(method="zero_shot", seed=8))]
    (rec,), _ = run_cells(napping, store, lambda rc: time.sleep(0.3) or {}, log=lambda _: 0)
    assert rec["result"]["seconds"] >= 0.3 > 0.1 > rec["result"]["cpu_seconds"] >= 0
    # on a CPU the record names the CPU (run times compare only on one model)
    on_cpu = jax.default_backend() == "cpu"
    machine = machine_info() if on_cpu else {}
    assert rec["result"].get("cpu_model") == machine.get("cpu")
    assert rec["result"].get("bf16_flags") == machine.get("bf16_flags")


def _fake_result(name: str, rng) -> dict:
    task, col, _ = cell_key(name)
    acc = float(rng.integers(0, 200)) / 200
    result = {
        "test_acc": acc,
        "seconds": float(rng.integers(10, 5000)),
        "prediction": {
            "majority_acc": 0.6,
            "predicted_counts": [int(x) for x in rng.integers(0, 99, 2)],
            "label_counts": [120, 80],
            "confusion": [[90, 30], [40, 40]],  # balanced: (90/120 + 40/80) / 2 = 62.5
        },
    }
    if col.startswith("cbp"):  # seed 1's stage-2 run saw another generator
        result["generator"] = {"id": "g2" if name.endswith("cbp/seed1") else "g1"}
    if col in ("bbt", "cbp"):
        result["cpu_model"] = "CPU A" if name.endswith("seed0") else "CPU B"
        result["calls"] = 7999
        result["resumed_at_generation"] = 250 if name.endswith("seed0") else 0
        result["curve"] = [{"budget": b, "calls": b, "test_acc": acc} for b in (250, 8000)]
    return result


def test_report_regenerates_byte_identically_from_records(tmp_path):
    cfg = PaperBudgetConfig()
    cells = cfg.cells()
    rng = np.random.default_rng(0)
    store = RecordStore(tmp_path / "a" / "runs.jsonl")
    for cell in cells[: len(cells) // 2]:  # a half-finished sweep
        store.append(cell, _fake_result(cell.name, rng), commit="c0ffee", dtype="bfloat16")
    md1 = write_report(cfg, cells, store, tmp_path / "a")
    (tmp_path / "b").mkdir()  # a "fresh clone": only the committed records
    shutil.copy(store.path, tmp_path / "b" / store.path.name)
    md2 = write_report(cfg, cells, RecordStore(tmp_path / "b" / store.path.name), tmp_path / "b")
    assert md1.read_bytes() == md2.read_bytes()
    text = md1.read_text()
    assert "majority class" in text and "BBT - zero-shot" in text and "Not yet run" in text
    # balanced accuracy from each confusion matrix; one class for everything scores 1/2
    assert "| majority class | 60.0 ± 0.0 | 50.0 ± 0.0 | - | 3/3 | 0 |" in text
    assert "| 62.5 ± 0.0 | - | 3/3 |" in text
    assert "Paired over seeds (balanced accuracy, points)" in text
    # each CBP column names its generators; one that saw two is flagged
    assert "- CBP z0 (no stage 2): g1\n" in text
    assert f"- {LABELS['cbp']}: g1, g2 **MIXED" in text
    # a resumed run's seconds cover its last process only: scaled to the whole run
    assert f"- {LABELS['bbt']}: 6 runs on cpu" in text and "scaled to the whole run" in text
    timed = _timed_seconds([{"result": r} for r in (
        {"seconds": 100.0, "generations": 395, "resumed_at_generation": 295},
        {"seconds": 500.0, "generations": 395, "resumed_at_generation": 0},
        {"seconds": 7.0},  # from before resumes were noted: left out beside noted runs
    )])  # fmt: skip
    assert timed == [395.0, 500.0]
    assert _timed_seconds([{"result": {"seconds": 7.0}}]) == [7.0]
    assert "2 resumed, timed from their resume and scaled" in text
    # the CPUs the runs finished on (records from before the field name none)
    assert "scaled to the whole run by generations; finished on CPU A / CPU B" in text
    (zero_shot,) = [ln for ln in text.splitlines() if ln.startswith("- zero-shot: ")]
    assert "finished on" not in zero_shot


def test_paper_budget_on_a_second_model_keeps_the_default_identity():
    default = {c.name: c.config for c in PaperBudgetConfig().cells()}
    # the committed records and stashes are keyed by these: the model field must not move them
    bbt = default["financial_phrasebank/bbt/seed0"]
    # the first protocol's BBT cells pin what their records ran with: CSA and p0="ids"
    assert (bbt.strategy, bbt.p0) == ("lazy_cma", "ids")
    assert bbt.run_dir.name == "seed0-5f332805"
    new = default["financial_phrasebank/published/bbt/seed0"]
    assert (new.strategy, new.p0, new.kshot) == ("pycma", "words", "balanced")
    nat = default["financial_phrasebank/published/cbp_natural/seed0"]
    assert nat.kshot == "natural" and nat.generator == SHIPPED_FINANCIAL
    assert "sst2/published/cbp_natural/seed0" not in default  # natural: financial only
    gemma = PaperBudgetConfig(model="gemma3-270m", only_columns=("zero_shot", "bbt"))
    cells = gemma.cells()
    assert gemma.name == "paper_budget_gemma3-270m" and len(cells) == 2 * 2 * 3
    assert {c.config.model for c in cells} == {"gemma3-270m"}
    assert {c.name.split("/")[1] for c in cells} == {"zero_shot", "bbt"}
    assert all(c.config != default[c.name] for c in cells)
    # CBP on another model uses generators trained on its embeddings, financial included
    full = PaperBudgetConfig(
        model="gemma3-270m", only_columns=("cbp_z0", "cbp", "published/cbp_held_out")
    )
    gens = {c.name: c.config.generator for c in full.cells()}
    root = "checkpoints/paper_budget/generators/gemma3-270m"
    assert gens["financial_phrasebank/cbp/seed1"] == f"{root}/financial/generator"
    assert gens["sst2/published/cbp_held_out/seed0"] == f"{root}/sentiment-minus-sst2/generator"
    # financial held out of stage 1: the sentiment generator never saw it
    assert (
        gens["financial_phrasebank/published/cbp_held_out/seed0"] == f"{root}/sentiment/generator"
    )
    assert generators_for(full, full.cells()) == [
        "financial", "sentiment", "sentiment-minus-sst2"
    ]  # fmt: skip
    assert "--model" in full.stage1_command("financial")
    # the default model keeps its shipped financial generator and its sentiment paths
    d = PaperBudgetConfig()
    assert default["financial_phrasebank/cbp/seed0"].generator == SHIPPED_FINANCIAL
    assert default["sst2/cbp/seed0"].generator == (
        "checkpoints/paper_budget/generators/sentiment/generator"
    )
    assert generators_for(d, d.cells()) == ["sentiment", "sentiment-minus-sst2"]
    with pytest.raises(ValueError, match="unknown columns"):
        PaperBudgetConfig(only_columns=("bbt", "cpb"))
    for bad in ({"budget": 0}, {"population": -1}, {"test_size": 0}, {"seeds": ()}):
        with pytest.raises(ValueError, match="must be positive"):
            PaperBudgetConfig(**bad)


CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)


def _data(seed, n=8):
    r = np.random.default_rng(seed)
    tokens = r.integers(0, CFG.vocab_size, (n, 6))
    return Inputs(tokens, np.ones_like(tokens), np.array([[5], [9]]), r.integers(0, 2, n))


def test_budget_curve_points_from_one_run():
    model = LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")
    service = ScoringService(model, (NoPrompt(), SoftPrompt()), budget=120)
    param = bbt_parameterization(
        jax.random.key(1), service.public_info(), ProjectionConfig(num_dims=8, prompt_len=2)
    )
    seen = []

    def on_milestone(best_z):
        seen.append(np.asarray(best_z).copy())
        return {"test_acc": float(len(seen))}

    cfg = BlackBoxConfig(population=8, budget=120, chunk=2)
    res = run_blackbox(
        service, param, _data(0), _data(1), cfg, progress=False,
        milestones=(30, 60, 120, 500), on_milestone=on_milestone,
    )  # fmt: skip
    points = [m for h in res.history for m in h.get("milestones", ())]
    assert [p["budget"] for p in points] == [30, 60, 120]  # 500 is beyond the budget
    assert all(p["calls"] >= p["budget"] for p in points[:2])
    assert points[-1]["calls"] == res.calls_used <= 120  # the end of the budget
    assert points[0]["calls"] - 30 < 2 * 8 + 1  # reached at the first chunk past it
    np.testing.assert_array_equal(seen[-1], res.best_z)  # the kept z, not the ES mean


def test_stashed_run_resumes_on_another_machine_to_the_same_result(tmp_path):
    """Killed mid-run; its newest checkpoint stashed beside the records; restored into a
    fresh checkout's run directory, the run ends where the uninterrupted one does."""
    from cbp_jax.experiment.in_flight import restore, stash
    from tests.helpers import KilledService

    model = LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")
    proj = ProjectionConfig(num_dims=8, prompt_len=2)

    def go(run_dir, service):
        param = bbt_parameterization(jax.random.key(1), service.public_info(), proj)
        cfg = BlackBoxConfig(population=8, budget=120, chunk=2)
        return run_blackbox(
            service, param, _data(0), _data(1), cfg, run_dir=run_dir, progress=False
        )

    kinds = (NoPrompt(), SoftPrompt())
    whole = go(tmp_path / "whole" / "es", ScoringService(model, kinds, budget=120))
    machine_a = tmp_path / "a" / "seed0-abc"
    with pytest.raises(KeyboardInterrupt):
        go(machine_a / "es", KilledService(ScoringService(model, kinds, budget=120), die_at=4))
    assert stash(machine_a, tmp_path / "repo" / "in_flight") is not None
    machine_b = tmp_path / "b" / "seed0-abc"
    assert restore(tmp_path / "repo" / "in_flight", machine_b)
    assert not restore(tmp_path / "repo" / "in_flight", machine_b)  # nothing newer to restore
    resumed = go(machine_b / "es", ScoringService(model, kinds, budget=120))
    np.testing.assert_array_equal(resumed.best_z, whole.best_z)
    assert resumed.history == whole.history and resumed.calls_used == whole.calls_used
    assert whole.resumed_at_generation == 0 < resumed.resumed_at_generation < whole.generations


def test_stash_index_lists_unfinished_runs_and_prune_drops_finished_ones(tmp_path):
    """The index names each stash's cell and generation; a finished run's stash is removed."""
    from cbp_jax.experiment.in_flight import prune, stash, stashed, write_index

    for name, step in (("seed0-aaa", 40), ("seed1-bbb", 80)):
        (tmp_path / "runs" / name / "es" / str(step)).mkdir(parents=True)
        (tmp_path / "runs" / name / "es" / str(step) / "state").write_text("x")
        assert stash(tmp_path / "runs" / name, tmp_path / "in_flight", f"task/bbt/{name}")
    assert stashed(tmp_path / "in_flight") == {
        "seed0-aaa": ("task/bbt/seed0-aaa", 40),
        "seed1-bbb": ("task/bbt/seed1-bbb", 80),
    }
    readme = write_index(tmp_path / "in_flight", "resume-cmd").read_text()
    assert "| seed1-bbb | task/bbt/seed1-bbb | 80 |" in readme and "`resume-cmd`" in readme
    assert prune(tmp_path / "in_flight", [tmp_path / "runs" / "seed0-aaa"]) == ["seed0-aaa"]
    assert list(stashed(tmp_path / "in_flight")) == ["seed1-bbb"]
    assert prune(tmp_path / "in_flight", [tmp_path / "runs" / "seed1-bbb"]) == ["seed1-bbb"]
    readme = write_index(tmp_path / "in_flight", "resume-cmd").read_text()
    assert "No run is stashed" in readme and "seed1-bbb" not in readme


def test_balanced_panel_draws_only_the_seeds_whose_milestones_carry_it(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from studies.paper_budget.curves import _panel, curve_plot

    cfg, rng = PaperBudgetConfig(), np.random.default_rng(0)
    recs = {}
    for seed in cfg.seeds:
        for col in ("zero_shot", "cbp_z0", "bbt"):
            recs[("sst2", col, seed)] = {"result": _fake_result(f"sst2/{col}/seed{seed}", rng)}
    recs[("sst2", "bbt", 2)]["result"]["curve"][-1]["balanced_acc"] = 0.7  # a new milestone
    fig, (left, right) = plt.subplots(1, 2)
    assert _panel(left, cfg, "sst2", recs, "test_acc")
    assert _panel(right, cfg, "sst2", recs, "balanced_acc")
    labels = [line.get_label() for line in right.lines]
    assert labels[0] == "BBT, first protocol (1)" and list(right.lines[0].get_ydata()) == [70.0]
    # the starting points in balanced accuracy: 62.5 from the confusion, 1/2 for one class
    assert {line.get_label(): line.get_ydata()[0] for line in right.lines[1:]} == {
        "zero-shot": 62.5, "CBP z0": 62.5, "majority class": 50.0}  # fmt: skip
    for rec in recs.values():
        rec["result"].get("curve", [{}])[-1].pop("balanced_acc", None)
    assert not _panel(plt.subplots()[1], cfg, "sst2", recs, "balanced_acc")
    assert curve_plot(cfg, "sst2", recs, tmp_path / "c.png") and (tmp_path / "c.png").exists()
    plt.close("all")
