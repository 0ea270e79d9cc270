"""What `make demo` (cbp-jax customize) prints: k-shot counts, the table, the verdict, time."""

import subprocess
import sys
import types

import pytest

from cbp_jax.cli_commands import customize_lines, time_line
from cbp_jax.data.spec import TaskSpec
from cbp_jax.run_report import kshot_lines, verdict

TASK = TaskSpec("toy", "Text: {text}\nLabel:", (("neg",), ("neu",), ("pos",)))


def _ex(labels):
    return [{"text": "x", "label": c} for c in labels]


def test_verdict_names_both_comparisons_in_points():
    assert verdict(0.65, 0.60, 0.55) == (
        "verdict: stage 2 beat z0 (+5.0 points) and the majority class (+10.0 points)"
    )
    assert verdict(0.585, 0.71, 0.60) == (
        "verdict: stage 2 beat neither z0 (-12.5 points) nor the majority class (-1.5 points)"
    )
    assert verdict(0.62, 0.71, 0.60) == (
        "verdict: stage 2 beat the majority class (+2.0 points) but not z0 (-9.0 points)"
    )
    assert verdict(0.62, 0.50, 0.70) == (
        "verdict: stage 2 beat z0 (+12.0 points) but not the majority class (-8.0 points)"
    )


def test_a_tie_is_not_a_win_and_accuracies_are_checked():
    assert verdict(0.6, 0.6, 0.6).startswith("verdict: stage 2 beat neither z0 (+0.0 points)")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        verdict(61.0, 0.6, 0.5)  # a percentage, not an accuracy


def test_kshot_lines_count_each_set_by_class_name():
    splits = types.SimpleNamespace(train=_ex([1, 1, 0, 2, 1]), dev=_ex([0, 1, 1, 1, 2]))
    lines = kshot_lines(splits, TASK, "natural")
    assert "natural: in the train pool's class proportions" in lines[0]
    assert lines[1].split() == ["train", "5", "examples:", "neg", "1,", "neu", "3,", "pos", "1"]
    assert lines[2].split()[:2] == ["dev", "5"]


def test_customize_lines_show_every_baseline_and_the_verdict():
    splits = types.SimpleNamespace(train=_ex([0, 1]), dev=_ex([1, 2]), test=_ex([1, 1, 1, 0]))
    cfg = types.SimpleNamespace(splits=lambda: splits, seed=0, model="m", kshot="natural")
    zero = {"test_acc": 0.25, "prediction": {"balanced_acc": 0.5}}
    cbp = {"test_acc": 1.0, "test_acc_z0": 0.5, "balanced_acc_z0": 0.4, "calls": 24}
    cbp.update(generations=1, dev_acc=0.5)
    text = "\n".join(customize_lines(cfg, TASK, zero, cbp, "in float32 (explicitly requested)"))
    assert "m in float32 (explicitly requested)" in text
    assert "test set 4 examples: neg 1, neu 3, pos 0" in text
    assert "majority-class baseline (always 'neu')" in text and "0.7500" in text
    assert "zero-shot" in text and "0.2500" in text and "0.4000" in text
    assert text.endswith(
        "verdict: stage 2 beat z0 (+50.0 points) and the majority class (+25.0 points)"
    )


def test_time_line_splits_compile_and_run_seconds():
    line = time_line(100.0, {"compile_seconds": 30.4, "compilations": 9, "cache_hits": 2})
    assert line.startswith("time: 100 s in all = 30 s compiling (9 programs compiled, 2 loaded")
    assert "+ 70 s running; on " in line and "AVX-512 " in line


HIDE_TORCH = """
import importlib.util, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name == "torch" else real(name, *a, **k)
if sys.argv[1] == "cli":
    from cbp_jax import cli
    cli.setup_process()
import transformers
"""


def test_the_cli_process_is_quiet_and_caches_compilations(tmp_path):
    """Without torch, importing transformers says "PyTorch was not found"; not in the CLI,
    whose process also creates the compile cache under checkpoints/ of its directory."""

    def stderr(mode):
        cmd = [sys.executable, "-c", HIDE_TORCH, mode]
        run = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path)
        return run.stderr

    assert "PyTorch was not found" in stderr("plain")  # the test can fail
    assert not (tmp_path / "checkpoints").exists()
    assert "PyTorch was not found" not in stderr("cli")
    assert (tmp_path / "checkpoints" / "jax_cache").is_dir()
