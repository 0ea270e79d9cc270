"""A newcomer's path through a task of their own, without the model: run directories from
any config path, naming a task across processes, every option explained, the budget
estimate, the domain check, and what the printed results say."""

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from cbp_jax import cli
from cbp_jax.data.splits import test_subset
from cbp_jax.data.tasks import get_task, run_key
from cbp_jax.methods.calls import plan_budget
from cbp_jax.methods.cbp import CrossDomainError, check_domain
from cbp_jax.methods.evaluate import balanced_accuracy, prediction_summary
from cbp_jax.run import HELP, RunConfig, parser
from cbp_jax.run_report import result_lines

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tasks"
SHIPPED_GENERATOR = EXAMPLES.parents[1] / "checkpoints" / "shipped" / "financial-generator"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CBP_JAX_TFDS_DIR", str(tmp_path / "tfds_cache"))


@pytest.fixture
def tasks_copy(tmp_path):
    dest = tmp_path / "mine" / "tasks"
    shutil.copytree(EXAMPLES, dest)
    return dest


def test_run_dir_from_the_task_name_never_its_path(tasks_copy, tmp_path, monkeypatch):
    """Defect 1: an absolute or ../ config path made the run directory the config file."""
    absolute = str(tasks_copy / "support_tickets.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative = "../mine/tasks/support_tickets.json"
    out = tmp_path / "runs"
    dirs = [
        RunConfig(task=t, method="zero_shot", seed=3, out=str(out)).run_dir
        for t in (absolute, relative)
    ]
    for d in dirs:
        assert d.parent.parent.parent == out  # inside --out
        assert d.parts[-3].startswith("support_tickets-") and d.parts[-2] == "zero_shot"
        assert d.name.startswith("seed3-")
    assert dirs[0].parent == dirs[1].parent  # one task directory whichever way it is named
    only = dirs[0]
    assert RunConfig(task="sst2", out=str(out)).run_dir.parent == out / "sst2" / "bbt"
    # an edited config is another task: its runs must not resume the old one's checkpoint
    cfg = json.loads((tasks_copy / "support_tickets.json").read_text())
    cfg["template"] = cfg["template"].replace("Team", "Queue")
    (tasks_copy / "support_tickets.json").write_text(json.dumps(cfg))
    assert RunConfig(task=absolute, out=str(out)).run_dir.parts[-3] != only.parts[-3]


def test_a_custom_task_is_named_the_same_way_in_a_fresh_process(tasks_copy, tmp_path):
    """Defect 5: a config's name worked only in the process that had loaded it."""
    path = str(tasks_copy / "word_quiz.json")
    here = [run_key(path), [e["id"] for e in test_subset(path, 5, 7)]]
    code = (
        "import json, sys; from cbp_jax.data.tasks import run_key; "
        "from cbp_jax.data.splits import test_subset; p = sys.argv[1]; "
        "print(json.dumps([run_key(p), [e['id'] for e in test_subset(p, 5, 7)]]))"
    )
    env = {**os.environ, "CBP_JAX_TFDS_DIR": str(tmp_path / "other_cache")}
    got = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == here
    with pytest.raises(KeyError, match="named by the path of its config"):
        get_task("word_quiz")


def _options(p: argparse.ArgumentParser):
    return [a for a in p._actions if a.option_strings and a.help != argparse.SUPPRESS]


def test_every_option_has_help_and_shows_its_default():
    """Defect 4: options listed with no help text and no default."""
    assert set(HELP) == {f.name for f in dataclasses.fields(RunConfig)}
    run_help = parser().format_help()
    for action in _options(parser()):
        if action.dest != "help":
            assert action.help.strip(), action.dest
    shown = [a for a in _options(parser()) if a.dest != "help"]  # fields, --url, --api-key
    assert run_help.count("(default:") == len(shown) == len(HELP) + 2
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) >= {"zero-shot", "train-generator", "customize", "predict", "serve"}
    for name, p in sub.choices.items():
        shown = [a for a in _options(p) if a.dest != "help"]
        assert all(a.help and a.help.strip() for a in shown), name
        assert p.format_help().count("(default:") == len(shown), name
    assert "300" in sub.choices["train-generator"].format_help()  # steps, with a time estimate
    assert "min" in sub.choices["train-generator"].format_help()


def test_budget_estimate():
    plan = plan_budget(1000, 20, 10)
    # start point on dev (1), then chunks of 10 generations (200 calls) + 1 dev evaluation
    assert (plan.generations, plan.dev_evals, plan.calls) == (49, 6, 986)
    assert plan.warnings() == []
    assert "49 generations of 20 candidates" in plan.describe()
    one = plan_budget(22, 20, 10)  # start evaluation, one generation, its dev evaluation
    assert (one.generations, one.calls) == (1, 22)
    assert "only 1 generation" in one.warnings()[0]
    waste = plan_budget(60, 20, 10)
    assert waste.generations == 2 and waste.unspent == 18
    assert any("18 of 60 calls" in w for w in waste.warnings())
    assert plan_budget(20, 20, 10).generations == 0
    old_unit = plan_budget(1000, 20, 10, candidate_cost=32, eval_cost=32)
    assert (old_unit.generations, old_unit.calls) == (1, 704)  # the 1000-call run
    with pytest.raises(ValueError, match="population"):
        plan_budget(100, 0, 10)


def test_budget_estimate_follows_the_engine_schedule():
    calls = pytest.importorskip("cbp_jax.methods.calls")
    for budget in (21, 22, 60, 1000, 4000, 8000):
        for pop, chunk in ((20, 10), (4, 5), (7, 3)):
            plan = plan_budget(budget, pop, chunk)
            assert (plan.generations, plan.dev_evals) == calls.plan(budget, pop, chunk)


def test_prediction_summary():
    s = prediction_summary([0, 0, 0, 1, 0], [0, 1, 1, 1, 2], 3)
    assert s["accuracy"] == pytest.approx(0.4)
    assert s["predicted_counts"] == [4, 1, 0] and s["label_counts"] == [1, 3, 1]
    assert s["confusion"] == [[1, 0, 0], [2, 1, 0], [1, 0, 0]]
    assert (s["majority_class"], s["majority_acc"], s["chance"]) == (1, 0.6, pytest.approx(1 / 3))
    assert s["balanced_acc"] == pytest.approx((1 / 1 + 1 / 3 + 0 / 1) / 3)  # per-class recall
    with pytest.raises(ValueError, match="class ids"):
        prediction_summary([0, 3], [0, 1], 3)


def test_balanced_accuracy_ignores_the_class_prior():
    # always the majority class: 60% accurate on a 3:1:1 test set, but 1/3 balanced
    always = prediction_summary([1] * 5, [0, 1, 1, 1, 2], 3)
    assert (always["accuracy"], always["balanced_acc"]) == (0.6, pytest.approx(1 / 3))
    assert balanced_accuracy([[2, 0, 0], [0, 0, 0], [1, 0, 1]]) == 0.75  # class 1 absent
    with pytest.raises(ValueError, match="square confusion"):
        balanced_accuracy([[1, 0]])


def test_printed_result_names_the_majority_baseline_and_no_nan(tasks_copy):
    """Defect 7 (`dev nan`) and 6 (a zero-shot accuracy that was the majority class)."""
    path = str(tasks_copy / "support_tickets.json")
    cfg = RunConfig(task=path, method="zero_shot", out="x")
    lines = result_lines(cfg, {"test_acc": 0.75, "seconds": 2.0}, get_task(path), [0, 0, 0, 1])
    text = "\n".join(lines)
    assert "nan" not in text and "dev" not in lines[0]
    assert "majority-class baseline 0.7500 (always 'billing': 3 of 4" in text
    summary = prediction_summary([0, 0, 0, 0], [0, 0, 0, 1], 2)
    text = "\n".join(
        result_lines(cfg, {"test_acc": 0.75, "prediction": summary}, get_task(path), [])
    )
    assert "predicted classes: billing 4, technical 0" in text and "confusion" in text


def test_generator_domain_is_recorded_and_checked(tasks_copy, tmp_path):
    """Defect 5: a generator of one domain customized a task of another without a word."""
    from cbp_jax.prompts.artifact import load_generator, save_generator

    if not SHIPPED_GENERATOR.is_dir():
        pytest.skip("no shipped generator in this checkout")
    gen = load_generator(SHIPPED_GENERATOR)
    assert gen.domain == "financial"
    save_generator(tmp_path / "gen", gen)
    meta = json.loads((tmp_path / "gen" / "meta.json").read_text())
    assert meta["info"]["domain"] == "financial"
    quiz = get_task(str(tasks_copy / "word_quiz.json"))  # domain commonsense
    with pytest.raises(CrossDomainError, match="financial tasks.*'commonsense'.*--allow-cross"):
        check_domain(gen.domain, quiz, allow_cross_domain=False)
    assert "financial" in check_domain(gen.domain, quiz, allow_cross_domain=True)
    assert check_domain("commonsense", quiz, allow_cross_domain=False) is None


def test_customize_estimates_checks_the_domain_and_tags_only_its_cbp_run(
    tasks_copy, tmp_path, monkeypatch, capsys
):
    """Defect 7: customize put its tag on the zero-shot folder; 6: no budget estimate."""
    import cbp_jax.run as run_mod

    seen = []

    def fake_run(cfg, progress=True, model=None, remote=None):
        seen.append(cfg)
        return {"test_acc": 0.5, "test_acc_z0": 0.5, "calls": 22, "generations": 1, "dev_acc": 0.5}

    generator = argparse.Namespace(domain="financial")
    monkeypatch.setattr(run_mod, "run", fake_run)
    monkeypatch.setattr("cbp_jax.model.load_model", lambda *a, **k: None)
    monkeypatch.setattr("cbp_jax.prompts.artifact.load_generator", lambda *a, **k: generator)
    argv = ["customize", "--task", str(tasks_copy / "word_quiz.json"), "--generator", "g",
            "--tag", "mygen", "--budget", "22", "--shots", "2", "--test-size", "8",
            "--out", str(tmp_path / "runs")]  # fmt: skip
    with pytest.raises(CrossDomainError, match="--allow-cross-domain"):
        cli.main(argv)
    assert seen == []  # refused before any run
    cli.main([*argv, "--allow-cross-domain"])
    assert [(c.method, c.tag) for c in seen] == [("zero_shot", ""), ("cbp", "mygen")]
    out = capsys.readouterr()
    assert "financial" in out.err
    assert "estimate: budget 22 API calls: 1 generations of 20 candidates" in out.out
    assert "WARNING: the budget buys only 1 generation" in out.out
    assert "majority-class baseline" in out.out


def test_the_documented_config_is_valid_json():
    """Defect 2: the only documentation's example had # comments, so copying it failed."""
    from cbp_jax.data import custom

    doc = custom.__doc__
    example = json.loads(doc[doc.index("    {") : doc.index("    }") + 5])
    assert set(custom.REQUIRED) <= set(example)
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    assert "## Your own task" in readme and "examples/tasks/" in readme


def test_zero_shot_default_split_is_a_runs_test_subset(tasks_copy):
    """Defect 3: `cbp-jax zero-shot --task X.json` failed with its default split ('dev')."""
    from cbp_jax.cli_commands import examples_for
    from cbp_jax.data.splits import kshot_splits, test_pool

    path = str(tasks_copy / "support_tickets.json")
    args = cli.build_parser().parse_args(["zero-shot", "--task", path, "--seed", "3"])
    assert args.split == "test" and args.test_size == 500
    assert examples_for(args) == test_pool(path)  # 64 < 500: the whole pool
    args.test_size = 10
    assert examples_for(args) == kshot_splits(path, 2, 3, test_size=10).test
