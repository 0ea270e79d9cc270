"""Every method through the experiment layer's runner on the real model, at toy budgets: one
result schema (prediction summary, dtype, identity, calls in the papers' unit, curve)."""

import json

import pytest

from cbp_jax.experiment.records import Cell, RecordStore
from cbp_jax.run import RunConfig, run

pytestmark = pytest.mark.slow
COMMON = dict(task="financial_phrasebank", shots=2, seed=0, test_size=8, population=4, chunk=2)


@pytest.mark.parametrize(
    "method,extra",
    [
        ("bbt", {"budget": 9, "num_dims": 8, "prompt_len": 8}),
        ("bbtv2", {"budget": 2 * (2 * 4 + 1) + 1, "bbtv2_layers": "0,29", "num_dims": 8}),
        ("prompt_tuning", {"pt_epochs": 1, "prompt_len": 4}),
        ("cbp", {"budget": 30, "generator": "checkpoints/shipped/financial-generator"}),
    ],
)
def test_method_result_schema(real_model, tmp_path, method, extra):
    rc = RunConfig(method=method, out=str(tmp_path), curve="9,20", **COMMON, **extra)
    result = run(rc, progress=False, model=real_model)
    pred = result["prediction"]
    assert result["test_acc"] == pred["accuracy"] and sum(pred["predicted_counts"]) == 8
    assert result["identity"] == rc.identity() and result["dtype"]["requested"] == "auto"
    assert json.loads((rc.run_dir / "result.json").read_text())["test_acc"] == result["test_acc"]
    if method in ("bbtv2", "cbp"):
        per_gen = rc.population * (2 if method == "bbtv2" else 1)  # BBTv2: 2 layers a round
        assert result["calls"] == result["generations"] * per_gen + result["dev_calls"]
        assert result["calls"] <= rc.budget
    if method in ("bbt", "bbtv2"):  # p0: BBT's words (RunConfig.p0 default), and its dev acc
        words = sum(c.isalpha() or c == " " for c in result["p0_text"])
        assert len(result["p0_text"]) >= 20 and words >= 0.8 * len(result["p0_text"])
        assert 0 <= result["start_dev_acc"] <= 1
    if method == "cbp":
        assert [p["budget"] for p in result["curve"]] == [9, 20]
        assert all(0 <= p["balanced_acc"] <= 1 for p in result["curve"])  # both metrics
        assert "test_acc_z0" in result
    rec = RecordStore(tmp_path / "t_runs.jsonl").append(
        Cell(method, rc), result, commit="test", dtype=result["dtype"]["dtype"]
    )
    assert rec["result"]["prediction"]["confusion"] == pred["confusion"]
