"""The POST table's new section (studies/post/table.md) is written from records only:
protocol from the config, a task's table over the seeds that ran (and which of the planned
ones they are)."""

from __future__ import annotations

import dataclasses

import pytest

from studies.post.plan import PUBLIC_SETS, REDUCED, ROWS, PostTableConfig, cells
from studies.post.report import new_section


def _result(acc: float) -> dict:
    out = {"N": 200, "epsilon_spent": 7.99, "delta": 0.1 / 200, "sigma": 1.1, "dp_steps": 250}
    for row in ROWS:
        out[row] = out[row + "_dp"] = acc
    for tag in ("", "_dp"):
        for p in PUBLIC_SETS:
            out[f"alpha_{p}{tag}"] = {"alpha": 0.5}
        out["mia" + tag] = {"auc": 0.6}
        out["lira" + tag] = {"auc": 0.7, "tpr_at_fpr": 0.02, "shadows": REDUCED.shadows}
    return out


def _records(cfg, accs: dict) -> list[dict]:
    by_name = {c.name: c for c in cells(cfg)}
    return [{"config": by_name[n].config, "result": _result(a)} for n, a in accs.items()]


def test_no_records_gives_protocol_and_what_has_not_run():
    text = new_section(REDUCED, [], "cmd")
    assert "sgd at lr 0.001 for 20 epochs" in text and "200 examples" in text
    assert "offline LiRA with 4 shadow prompts" in text
    assert "reduced preset's table" in text
    assert "Not run yet: sst2, financial_phrasebank." in text


def test_one_seed_is_shown_as_such_and_two_seeds_as_mean_and_std():
    text = new_section(REDUCED, _records(REDUCED, {"sst2/seed0": 0.8}), "cmd")
    assert "## sst2 (seeds run: [0] of [0, 1, 2])" in text
    assert "| Direct transfer | 80.00 | 80.00 |" in text  # one seed: no ± 0.00
    assert "delta = 5.00e-04 (< 1/N = 5.00e-03)" in text
    assert "Not run yet: financial_phrasebank." in text and "Command: `cmd`" in text
    text = new_section(REDUCED, _records(REDUCED, {"sst2/seed0": 0.8, "sst2/seed2": 0.6}), "c")
    assert "seeds run: [0, 2] of [0, 1, 2]" in text
    assert "| Direct transfer | 70.00 ± 14.14 | 70.00 ± 14.14 |" in text


def test_records_of_seeds_outside_the_config_are_ignored():
    cfg = dataclasses.replace(REDUCED, seeds=(1,))
    recs = _records(REDUCED, {"sst2/seed0": 0.8})
    assert "## sst2" not in new_section(cfg, recs, "cmd")


def test_private_size_must_be_an_int():
    with pytest.raises(ValueError, match="private_size must be an int >= 2"):
        PostTableConfig(private_size=200.0)
    assert PostTableConfig(private_size=200).private_size == 200


def test_the_student_of_each_seed_is_named_and_a_mismatch_is_flagged():
    recs = _records(REDUCED, {"sst2/seed0": 0.8, "sst2/seed1": 0.7})
    recs[0]["result"]["student_id"] = recs[1]["result"]["student_id"] = "aaaa"
    text = new_section(REDUCED, recs, "cmd")
    assert "(params digest): seed 0: aaaa, seed 1: aaaa." in text
    assert "did not all use the same student" not in text
    recs[1]["result"]["student_id"] = "bbbb"
    assert "did not all use the same student" in new_section(REDUCED, recs, "cmd")
    del recs[0]["result"]["student_id"]  # records from before the digest was recorded
    text = new_section(REDUCED, recs, "cmd")
    assert "seed 0: not recorded, seed 1: bbbb" in text and "did not all use" in text
