"""The ES step timers that experiments/bench_es_step.py and other scripts reuse."""

import math

import pytest

from cbp_jax.es.bench import PYCMA, compare_steps, time_es_step


def test_time_es_step_returns_seconds_per_generation():
    t = time_es_step("sep_cma", 6, 4, n_gens=3, repeats=2, warmup=1)
    assert math.isfinite(t) and 0.0 < t < 5.0


def test_pycma_timers():
    pytest.importorskip("cma")
    windows = compare_steps([PYCMA], 6, 4, n_gens=2, repeats=3, warmup=1)
    assert list(windows) == [PYCMA] and len(windows[PYCMA]) == 3
    assert all(0.0 < t < 5.0 for t in windows[PYCMA])
    assert 0.0 < time_es_step(PYCMA, 6, 4, n_gens=2, repeats=1, warmup=1) < 5.0


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown ES strategy"):
        time_es_step("nope", 6, 4)
