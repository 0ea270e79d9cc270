"""The cbp study's plan: which generator each run uses, and what it refuses.

The leave-one-task-out claim rests on the held-out runs using a generator that never saw
their task; these tests check the plan (no model is loaded, nothing is trained). The
records side (cells, run records, tables from records) is in test_table_records.py.
"""

import pytest

from cbp_jax.data.tasks import domain_tasks
from studies.cbp import plan as cbp_sweep
from studies.cbp import report as cbp_domains_report


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
