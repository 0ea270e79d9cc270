"""The RAPT table's reconstruction-effect rows: paired per seed, in points, n/a when unrun."""

from cbp_jax.experiment.rapt_table import ARMS, TableConfig, reconstruction_effect


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
