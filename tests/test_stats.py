"""Paired comparison over tasks and seeds (cbp_jax.stats): the interval, its unit, bad input."""

import math

import numpy as np
import pytest

from cbp_jax.stats import paired_summary


def test_one_task_falls_back_to_seeds_with_the_student_t_interval():
    s = paired_summary({"sst2": [0.02, 0.03, 0.04]})
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert s.unit == "seed" and s.n_units == 3
    assert s.mean == pytest.approx(0.03)
    assert (s.lo, s.hi) == pytest.approx((0.03 - half, 0.03 + half))
    assert (s.wins, s.losses, s.ties) == (3, 0, 0)
    assert s.verdict() == "ahead"


def test_several_tasks_use_task_means_as_units_and_count_every_pair():
    s = paired_summary({"a": [0.1, -0.1, 0.0], "b": [-0.2, -0.2, -0.2]})
    assert s.unit == "task" and s.n_units == 2
    assert s.mean == pytest.approx(np.mean([0.0, -0.2]))
    assert (s.wins, s.losses, s.ties) == (1, 4, 1)
    assert s.lo < s.mean < s.hi
    assert s.verdict() == "not distinguishable"


def test_consistently_negative_differences_read_as_behind():
    s = paired_summary({t: [-0.05 + 0.001 * i, -0.04] for i, t in enumerate("abcd")})
    assert s.hi < 0 and s.verdict() == "behind"
    assert "95% CI" in s.describe() and s.describe().startswith("-4.")


def test_a_single_run_has_no_interval():
    s = paired_summary({"copa": [0.02]})
    assert math.isnan(s.lo) and s.verdict() == "no interval (one unit)"


@pytest.mark.parametrize(
    "diffs, match",
    [({}, "at least one"), ({"a": []}, "at least one"), ({"a": [float("nan")]}, "NaN")],
)
def test_bad_input_is_refused(diffs, match):
    with pytest.raises(ValueError, match=match):
        paired_summary(diffs)


def test_level_out_of_range_is_refused():
    with pytest.raises(ValueError, match="level"):
        paired_summary({"a": [0.1, 0.2]}, level=95)
