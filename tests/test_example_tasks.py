"""The shipped example tasks (examples/tasks/) as a newcomer runs them, on the real default
model at toy sizes: copied elsewhere, named by absolute path from another working
directory, zero-shot and one BBT generation each; `cbp-jax zero-shot` on the same test
subset; `cbp-jax predict` reloading a saved prompt and a CBP task vector."""

import json
import pathlib
import re
import shutil

import numpy as np
import pytest

from cbp_jax import cli
from cbp_jax import run as run_mod
from cbp_jax.methods.calls import plan_budget

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples" / "tasks"
SHIPPED_GENERATOR = EXAMPLES.parents[1] / "checkpoints" / "shipped" / "financial-generator"
POPULATION = 4


@pytest.fixture
def newcomer(tmp_path, monkeypatch, real_model):
    """The example configs copied to a fresh directory; the working directory elsewhere."""
    monkeypatch.setenv("CBP_JAX_TFDS_DIR", str(tmp_path / "tfds_cache"))
    monkeypatch.setattr("cbp_jax.model.load_model", lambda *a, **k: real_model)
    tasks = tmp_path / "my_tasks"
    shutil.copytree(EXAMPLES, tasks)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return sorted(p.resolve() for p in tasks.glob("*.json"))


def test_examples_run_zero_shot_and_one_bbt_generation(newcomer, tmp_path, capsys):
    assert [p.name for p in newcomer] == ["support_tickets.json", "word_quiz.json"]
    out = tmp_path / "runs"
    budget = POPULATION + 2  # the start point on dev, one generation, its dev evaluation
    assert plan_budget(budget, POPULATION, 10).generations == 1
    for config in newcomer:
        common = ["--task", str(config), "--shots", "2", "--test-size", "8", "--seed", "0",
                  "--out", str(out)]  # fmt: skip
        zero = run_mod.main([*common, "--method", "zero_shot"])
        printed = capsys.readouterr().out
        assert "majority-class baseline" in printed and "nan" not in printed
        bbt_argv = ["--method", "bbt", "--budget", str(budget), "--population",
                    str(POPULATION), "--num-dims", "16", "--prompt-len", "4"]  # fmt: skip
        bbt = run_mod.main([*common, *bbt_argv])
        assert bbt["generations"] == 1 and bbt["calls"] == budget
        for argv, result in ((["--method", "zero_shot"], zero), (bbt_argv, bbt)):
            cfg = run_mod.config_of(run_mod.parser().parse_args([*common, *argv]))
            saved = json.loads((cfg.run_dir / "result.json").read_text())
            assert saved["test_acc"] == result["test_acc"] and saved["n_test"] == 8
            assert cfg.run_dir.is_relative_to(out)
            assert sum(saved["prediction"]["predicted_counts"]) == 8
        # BBT's best prompt is saved with the run; predict reloads it
        prompt_dir = str(cfg.run_dir / "prompt")
        got = cli_predict(["--prompt", prompt_dir, "--task", str(config), "--seed", "0",
                           "--test-size", "8"])  # fmt: skip
        assert got == bbt["prediction"]
        # the command line scores the same test subset by default (split test, same seed)
        cli.main(["zero-shot", "--task", str(config), "--seed", "0", "--test-size", "8"])
        printed = capsys.readouterr().out
        acc = float(re.search(r"\(test, 8 examples\): ([0-9.]+)", printed).group(1))
        assert acc == pytest.approx(zero["test_acc"])
        assert "predicted classes:" in printed and "majority-class baseline" in printed


def test_predict_reloads_a_prompt_and_a_task_vector(newcomer, tmp_path, capsys, real_model):
    from cbp_jax.data.splits import test_subset
    from cbp_jax.data.tasks import get_task
    from cbp_jax.methods import evaluate
    from cbp_jax.methods.cbp import save_task_vector, task_vector_accuracy
    from cbp_jax.methods.saved_prompt import save_prompt
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.service import ScoringService
    from cbp_jax.service.oracle import SoftPrompt
    from cbp_jax.service.provider import cbp_service

    config = str(newcomer[1])  # word_quiz: four options
    task, test = get_task(config), test_subset(config, 1, 8)
    subset = ["--task", config, "--seed", "1", "--test-size", "8"]
    rng = np.random.default_rng(0)
    prompt = (0.02 * rng.standard_normal((1, 4, real_model.cfg.hidden_size))).astype(np.float32)
    save_prompt(tmp_path / "prompt", "prompt", prompt, task=config, model=real_model, method="bbt")
    want = evaluate.evaluate(
        ScoringService(real_model, (SoftPrompt(),)), real_model.tokenizer, task, test,
        kind="prompt", payload=prompt,
    )  # fmt: skip
    got = cli_predict(["--prompt", str(tmp_path / "prompt"), *subset])
    assert got == want
    printed = capsys.readouterr().out
    assert f"accuracy {want['accuracy']:.4f}" in printed and "confusion" in printed
    if not SHIPPED_GENERATOR.is_dir():
        pytest.skip("no shipped generator in this checkout")
    artifact = load_generator(SHIPPED_GENERATOR, expected_model=real_model)
    release = artifact.release()
    z = release.z0_R + 0.1 * rng.standard_normal(release.task_dims).astype(np.float32)
    save_task_vector(tmp_path / "vector", z, task=config, release=release)
    got = cli_predict(["--vector", str(tmp_path / "vector"), "--generator",
                       str(SHIPPED_GENERATOR), *subset])  # fmt: skip
    service = cbp_service(real_model, artifact)
    acc = task_vector_accuracy(service, real_model.tokenizer, task, test, z, release.task_dims)
    assert got["accuracy"] == acc and sum(got["predicted_counts"]) == 8


def cli_predict(argv):
    from cbp_jax.cli_commands import predict

    return predict(cli.build_parser().parse_args(["predict", *argv]))
