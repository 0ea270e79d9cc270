"""The RAPT table: reconstruction-effect rows (paired per seed, in points, n/a when unrun)
and its two measures over old (accuracy-only) and new (summary) records."""

from cbp_jax.experiment.rapt_table import (
    ARMS,
    UTILITY,
    TableConfig,
    measure,
    reconstruction_effect,
    report,
)
from cbp_jax.privacy.attack_suite import TOKEN_ATTACKS


def test_reconstruction_effect_is_paired_per_seed_in_points():
    cfg = TableConfig(tasks=("sst2",), etas=(40.0, 100.0), seeds=(1, 2))
    rows = []
    for base in (0.50, 0.60):  # two seeds; +rec adds 2 and 4 points at eta 40
        row = {(arm, e): base for arm in ARMS for e in cfg.etas}
        row[("prompt+rec", 40.0)] = base + (0.02 if base == 0.50 else 0.04)
        row[("lora+rec", 100.0)] = None  # not run yet
        rows.append(row)
    text = "\n".join(reconstruction_effect(cfg, "sst2", rows))
    assert "| prompt | +3.0 (+2.0, +4.0) | +0.0 (+0.0, +0.0) |" in text
    assert "| LoRA | +0.0 (+0.0, +0.0) | n/a |" in text
    assert "| placement: input - plain before | +3.0 (+2.0, +4.0) |" in text


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
