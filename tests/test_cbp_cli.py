"""The CBP command line end to end on the real default model, at toy sizes: stage 1 via
`cbp-jax train-generator`, stage 2 via `cbp-jax customize`, and the saved vector reloaded
reproduces the reported test accuracy; `customize --url` against the same generator served
over HTTP finds the same vector and scores."""

import json
import pathlib
import re

import pytest

from cbp_jax import cli
from cbp_jax.data.tasks import domain_tasks


def test_domain_tasks():
    assert domain_tasks("medical") == ("pubmedqa", "medqa_usmle", "mmlu_medical")
    assert "copa" not in domain_tasks("commonsense", exclude=("copa",))
    with pytest.raises(KeyError, match="unknown domain"):
        domain_tasks("legal")
    with pytest.raises(KeyError, match="not in domain"):
        domain_tasks("financial", exclude=("sst2",))
    with pytest.raises(ValueError, match="without tasks"):
        domain_tasks("financial", exclude=("financial_phrasebank",))


def test_train_generator_then_customize(tmp_path, capsys, real_model, monkeypatch):
    from cbp_jax.data.splits import kshot_splits
    from cbp_jax.data.tasks import get_task
    from cbp_jax.methods.cbp import load_task_vector, task_vector_accuracy
    from cbp_jax.prompts.artifact import load_generator
    from cbp_jax.service.provider import cbp_service

    monkeypatch.setattr("cbp_jax.model.load_model", lambda *a, **k: real_model)
    gen_dir = tmp_path / "gen"
    cli.main(
        ["train-generator", "--domain", "financial", "--steps", "2", "--batch-size", "2",
         "--warmup", "0", "--max-len", "32", "--out", str(gen_dir)]
    )  # fmt: skip
    assert "CBP stage 1 on financial_phrasebank: 2 steps" in capsys.readouterr().out
    out = tmp_path / "runs"
    cli.main(
        ["customize", "--task", "financial_phrasebank", "--generator", str(gen_dir / "generator"),
         "--shots", "2", "--test-size", "12", "--budget", "60", "--population", "4",
         "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "CBP z0 (no stage 2)" in printed
    assert "CBP stage 2" in printed and "verdict: stage 2 beat" in printed
    assert "k-shot sets (balanced" in printed and re.search(r"time: \d+ s in all", printed)
    vector_dir = pathlib.Path(re.search(r"task vector: (\S+)", printed).group(1))
    run_dir = vector_dir.parent
    assert run_dir.parent == out / "financial_phrasebank" / "cbp"
    result = json.loads((run_dir / "result.json").read_text())
    assert 0 < result["calls"] <= 60
    artifact = load_generator(gen_dir / "generator", expected_model=real_model)
    release = artifact.release()
    vec = load_task_vector(vector_dir, release=release)
    test = kshot_splits("financial_phrasebank", 2, 42, test_size=12).test
    acc = task_vector_accuracy(
        cbp_service(real_model, artifact), real_model.tokenizer,
        get_task("financial_phrasebank"), test, vec.z_R, release.task_dims,
    )  # fmt: skip
    assert acc == result["test_acc"]

    # the user's side again, against the provider serving that generator over HTTP: the
    # release comes from /v1/info, every score (test set too) is charged to the key
    from cbp_jax.serve.launch import make_server, read_users
    from tests.serve_live import KEYS, LiveServer

    def serve(args):
        return make_server(real_model, artifact, read_users(None, args.key), args, "smollm2-135m")

    srv = LiveServer(tmp_path / "ledger.sqlite", {"alice": 1000}, make=serve)
    try:
        remote_out = tmp_path / "remote_runs"
        monkeypatch.setenv("CBP_API_KEY", KEYS["alice"])
        monkeypatch.setattr("cbp_jax.model.load_model", lambda *a, **k: pytest.fail("weights"))
        cli.main(
            ["customize", "--task", "financial_phrasebank", "--url", srv.url,
             "--shots", "2", "--test-size", "12", "--budget", "60", "--population", "4",
             "--out", str(remote_out)]
        )  # fmt: skip
        printed = capsys.readouterr().out
        assert f"smollm2-135m served at {srv.url}" in printed
        assert "verdict: stage 2 beat" in printed
        remote_vec = pathlib.Path(re.search(r"task vector: (\S+)", printed).group(1))
        remote = json.loads((remote_vec.parent / "result.json").read_text())
        for key in ("test_acc", "test_acc_z0", "calls", "dev_acc", "generations"):
            assert remote[key] == result[key], key
        got = load_task_vector(remote_vec, release=release).z_R
        assert (got == vec.z_R).all()
        zero_dir = next((remote_out / "financial_phrasebank" / "zero_shot").iterdir())
        zero = json.loads((zero_dir / "result.json").read_text())
        assert srv.used("alice") == zero["test_calls"] + remote["test_calls"] + remote["calls"]
        assert f"calls charged for the test set: {zero['test_calls'] + remote['test_calls']}" in (
            printed
        )
    finally:
        srv.stop()
