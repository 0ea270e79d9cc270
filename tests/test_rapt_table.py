"""The RAPT table: reconstruction-effect rows (paired per seed, in points, n/a when unrun),
its two measures over old (accuracy-only) and new (summary) records, and its arms: RAPT's
public plain tokens (fixed, random) by default, the oracle only under its own label."""

from cbp_jax.privacy.attack_suite import TOKEN_ATTACKS
from cbp_jax.privacy.peft import ORACLE
from studies.rapt.report import UTILITY, measure, reconstruction_effect, report
from studies.rapt.study import ARMS, ORACLE_LABEL, TableConfig, arm_config, arm_label, rc_payload


def test_reconstruction_effect_is_paired_per_seed_in_points():
    cfg = TableConfig(tasks=("sst2",), etas=(40.0, 100.0), seeds=(1, 2))
    rows = []
    for base in (0.50, 0.60):  # two seeds; +rec adds 2 and 4 points at eta 40
        row = {(arm, e): base for arm in ARMS for e in cfg.etas}
        row[("prompt+rec (fixed plain)", 40.0)] = base + (0.02 if base == 0.50 else 0.04)
        row[("lora+rec (random plain)", 100.0)] = None  # not run yet
        rows.append(row)
    text = "\n".join(reconstruction_effect(cfg, "sst2", rows))
    assert "| prompt+rec (fixed plain) | +3.0 (+2.0, +4.0) | +0.0 (+0.0, +0.0) |" in text
    assert "| LoRA+rec (random plain) | +0.0 (+0.0, +0.0) | n/a |" in text
    assert "| prompt + non-private oracle (upper bound) | +0.0 (+0.0, +0.0) |" in text
    assert "| placement: plain after - plain before | +3.0 (+2.0, +4.0) |" in text


def test_arms_default_to_public_plain_tokens_and_label_the_oracle():
    cfg = TableConfig()
    for peft in ("prompt", "prefix", "lora"):
        for choice in ("fixed", "random"):
            rc = arm_config(cfg, f"{peft}+rec ({choice} plain)", 40.0, 13)
            assert (rc.placement, rc.plain_tokens, rc.use_reconstruction) == (
                "plain_after", choice, True)  # fmt: skip
            assert rc.num_plain_tokens == cfg.num_plain_tokens
        oracle = arm_config(cfg, f"{peft}+rec", 40.0, 13)
        assert oracle.placement == ORACLE and arm_label(f"{peft}+rec").endswith(ORACLE_LABEL)
    labels = [arm_label(a) for a in ARMS]
    assert all("oracle" not in x for x in labels if "plain" in x)
    assert sum("oracle" in x for x in labels) == 3
    # a field added after the records ran stays out of a cell's config at its recorded value
    assert "plain_tokens" not in rc_payload(arm_config(cfg, "prompt", 40.0, 13))
    assert rc_payload(arm_config(cfg, "lora+rec (random plain)", 40.0, 13))["plain_tokens"] == (
        "random")  # fmt: skip


def _summary(acc, bal):
    return {"accuracy": acc, "balanced_acc": bal}


def test_report_reads_old_float_records_and_new_summaries_in_both_measures():
    cfg = TableConfig(tasks=("sst2",), etas=(40.0,), seeds=(1, 2))
    old = {m: 0.5 for m in UTILITY} | {(arm, 40.0): 0.5 for arm in ARMS}  # accuracy only
    new = {m: _summary(0.7, 0.6) for m in UTILITY} | {(a, 40.0): _summary(0.7, 0.6) for a in ARMS}
    old |= {(a, 40.0): 0.1 for a in (*TOKEN_ATTACKS, "attribute AUC")}
    new |= {(a, 40.0): 0.1 for a in (*TOKEN_ATTACKS, "attribute AUC")}
    assert measure(new, "balanced_acc")[("lora", 40.0)] == 0.6
    assert measure(old, "balanced_acc")[("lora", 40.0)] is None
    assert measure(old, "balanced_acc")[(TOKEN_ATTACKS[0], 40.0)] == 0.1  # rates untouched
    text = report(cfg, {"sst2": [old, new]}, "cmd")
    acc = text.split("## sst2: test accuracy")[1].split("##")[0]
    bal = text.split("## sst2: balanced accuracy")[1].split("##")[0]
    assert "| zero-shot | 0.600 ± 0.141 |" in acc  # both seeds count in accuracy
    assert "| zero-shot | 0.600 ± 0.000 (1/2 seeds) |" in bal  # only the summary in balanced
    only_old = report(cfg, {"sst2": [old, old]}, "cmd")
    assert "balanced accuracy" not in only_old and "## sst2: test accuracy" in only_old
