"""The CBP domain sweep's plan: which generator each run uses, and what it refuses.

The leave-one-task-out claim rests on the held-out runs using a generator that never saw
their task; these tests check the plan (no model is loaded, nothing is trained), and that
the committed record of finished runs restores them exactly.
"""

import dataclasses
import json
import pathlib
import shutil
import sys

import pytest

from cbp_jax.data.tasks import domain_tasks

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "experiments"))
import cbp_domains_report  # noqa: E402
import cbp_run_records  # noqa: E402
import cbp_sweep  # noqa: E402


def test_held_out_runs_use_a_generator_trained_without_their_task():
    cfg = cbp_sweep.SweepConfig()
    gens = cfg.generators()
    held = [rc for rc in cbp_sweep.planned(cfg) if "-minus-" in rc.tag]
    assert {rc.task for rc in held} == set(cfg.leave_one_out)
    for rc in held:
        domain, excluded = gens[rc.tag]
        assert excluded == (rc.task,) and rc.task in domain_tasks(domain)
        assert rc.generator.endswith(f"{rc.tag}/generator")


def test_every_task_of_a_multi_task_domain_is_held_out_by_default():
    cfg = cbp_sweep.SweepConfig()
    multi = {t for d in cfg.domains if len(domain_tasks(d)) > 1 for t in domain_tasks(d)}
    assert set(cfg.leave_one_out) == multi


def test_in_domain_runs_use_the_domain_generator_and_headline_columns_come_first():
    cfg = cbp_sweep.SweepConfig(domains=("medical",), leave_one_out=(), seeds=(0,))
    plan = cbp_sweep.planned(cfg)
    cbp = [rc for rc in plan if rc.method == "cbp"]
    assert cbp and all(rc.tag == "medical" for rc in cbp)
    assert all(rc.generator == "" for rc in plan if rc.method != "cbp")
    methods = [rc.method for rc in plan]
    last_headline = max(i for i, m in enumerate(methods) if m in ("zero_shot", "bbt", "cbp"))
    first_other = min(i for i, m in enumerate(methods) if m in ("bbtv2", "prompt_tuning"))
    assert last_headline < first_other
    assert len(plan) == len(domain_tasks("medical")) * len(cbp_sweep.METHODS)


def test_bad_sweep_configs_are_refused():
    with pytest.raises(ValueError, match="leave-one-out task 'copa'"):
        cbp_sweep.SweepConfig(domains=("medical",), leave_one_out=("copa",))
    with pytest.raises(ValueError, match="unknown k-shot proportions 'even'"):
        cbp_sweep.SweepConfig(kshot="even")
    with pytest.raises(ValueError, match="unknown methods"):
        cbp_sweep.SweepConfig(methods=("bbt", "magic"))


def test_paired_line_counts_only_tasks_whose_seeds_all_finished():
    assert cbp_domains_report._paired_line("A - B", {"a": None, "b": None}) == []
    partial = cbp_domains_report._paired_line("A - B", {"a": [0.1, 0.2], "b": None})
    assert partial[0].startswith("A - B (1 of 2 tasks finished: a), paired by seed")
    line = cbp_domains_report._paired_line("A - B", {"a": [0.1, 0.2], "b": [0.0, -0.1]})
    assert line[0].startswith("A - B, paired by seed (points): +5.0, 95% CI")
    assert "over 2 tasks; 2 wins, 1 losses, 1 ties" in line[0]


def test_held_out_only_plans_just_the_held_out_runs_of_a_stage1_variant():
    cfg = cbp_sweep.SweepConfig(
        held_out_only=True, task_vectors=True, seeds=(0, 1), methods=("cbp",)
    )
    plan = cbp_sweep.planned(cfg)
    assert len(plan) == 2 * len(cfg.leave_one_out)
    for rc in plan:
        domain = next(d for d in cfg.domains if rc.task in domain_tasks(d))
        assert rc.method == "cbp" and rc.tag == f"{domain}-minus-{rc.task}"
    # with BBT listed, its runs on the held-out tasks come too (a data-protocol variant)
    both = cbp_sweep.SweepConfig(held_out_only=True, seeds=(0,), methods=("bbt", "cbp"))
    plan = cbp_sweep.planned(both)
    assert sorted((rc.task, rc.method) for rc in plan) == sorted(
        (t, m) for t in both.leave_one_out for m in ("bbt", "cbp")
    )
    assert all(rc.tag == "" for rc in plan if rc.method == "bbt")
    # one method alone (a sweep split into one process per method) plans that method's
    # runs, the same RunConfigs as in the joint plan
    for method in ("bbt", "cbp"):
        alone = cbp_sweep.SweepConfig(held_out_only=True, seeds=(0,), methods=(method,))
        assert cbp_sweep.planned(alone) == [rc for rc in plan if rc.method == method]
    with pytest.raises(ValueError, match="held_out_only"):
        cbp_sweep.SweepConfig(held_out_only=True, leave_one_out=())
    with pytest.raises(ValueError, match="held_out_only"):
        cbp_sweep.SweepConfig(held_out_only=True, methods=("zero_shot",))


def test_stage1_command_trains_the_named_generator_with_the_sweeps_protocol():
    cfg = cbp_sweep.SweepConfig(permute_options=True)
    domain, exclude = cfg.generators()["commonsense-minus-copa"]
    cmd = cfg.stage1_command(domain, exclude, cfg.generator_dir("commonsense-minus-copa"))
    flags = dict(zip(cmd[4::2], cmd[5::2], strict=False))
    assert cmd[2:4] == ["cbp_jax.cli", "train-generator"]
    assert flags["--domain"] == "commonsense" and flags["--exclude"] == "copa"
    assert flags["--steps"] == str(50 * 4) and flags["--max-len"] == "128"
    assert "--permute-options" in cmd and "--task-vectors" not in cmd and "--seed" not in cmd
    seeded = cfg.stage1_command("financial", (), cfg.generator_dir("financial-seed2"), seed=2)
    assert seeded[-2:] == ["--seed", "2"] and "150" in seeded  # min 150 steps for one task


def test_kshot_protocol_reaches_every_run():
    cfg = cbp_sweep.SweepConfig(kshot="natural", seeds=(0,))
    assert {rc.kshot for rc in cbp_sweep.planned(cfg)} == {"natural"}


@pytest.fixture(params=["outside", "inside"])
def sweep_out(request, tmp_path):
    """A sweep folder outside the repository (absolute paths stay) or inside it (recorded
    relative to the root, as a committed record must be)."""
    if request.param == "outside":
        yield str(tmp_path / "sweep")
        return
    out = f"checkpoints/test-run-records-{tmp_path.name}"
    yield out
    shutil.rmtree(cbp_sweep.ROOT / out, ignore_errors=True)


def test_run_records_restore_finished_runs_bit_for_bit_and_refuse_another_protocol(
    tmp_path, sweep_out
):
    cfg = cbp_sweep.SweepConfig(
        held_out_only=True, seeds=(0, 1), methods=("bbt", "cbp"), out=sweep_out
    )
    plan = cbp_sweep.planned(cfg)
    finished = plan[:3]  # BBT seeds 0-1 and CBP seed 0 of the first task; the rest unfinished
    for i, rc in enumerate(finished):  # what cbp_jax.run writes
        rc.run_dir.mkdir(parents=True)
        result = {"config": dataclasses.asdict(rc), "test_acc": 0.1 * i + 1 / 3, "history": [i]}
        (rc.run_dir / "result.json").write_text(json.dumps(result, indent=1))
    originals = [(rc.run_dir / "result.json").read_bytes() for rc in finished]

    records = tmp_path / "sweep_runs.jsonl"
    assert cbp_run_records.save(cfg, records) == 3
    if not pathlib.Path(sweep_out).is_absolute():  # nothing in it names this clone's path
        assert str(cbp_sweep.ROOT) not in records.read_text()
    for rc in finished:
        (rc.run_dir / "result.json").unlink()
    assert cbp_run_records.restore(cfg, records) == 3
    assert [(rc.run_dir / "result.json").read_bytes() for rc in finished] == originals
    assert not any((rc.run_dir / "result.json").exists() for rc in plan[3:])
    assert cbp_run_records.restore(cfg, records) == 0  # finished runs are left alone
    # a plan without those runs ignores their records
    other = dataclasses.replace(cfg, seeds=(2,))
    assert cbp_run_records.restore(other, records) == 0

    # a record made before a RunConfig field existed counts it at its default
    for rc in finished:
        (rc.run_dir / "result.json").unlink()
    lines = records.read_text().splitlines()
    older = json.loads(lines[0])
    del older["result"]["config"]["dev_margin"]
    records.write_text("\n".join([json.dumps(older), *lines[1:]]) + "\n")
    assert cbp_run_records.restore(cfg, records) == 3
    assert (
        "dev_margin" not in json.loads((finished[0].run_dir / "result.json").read_text())["config"]
    )

    # a record of the same run folder under another protocol is refused, by field
    for rc in finished:
        (rc.run_dir / "result.json").unlink()
    tampered = json.loads(lines[1])
    tampered["result"]["config"]["budget"] = 123
    records.write_text("\n".join([lines[0], json.dumps(tampered), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match=r"sweep_runs.jsonl:2: .* differs .* \['budget'\]"):
        cbp_run_records.restore(cfg, records)
