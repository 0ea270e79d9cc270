"""StepCache: a finished step is computed once, reloaded bit for bit, and never half-saved."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from cbp_jax.experiment.step_cache import StepCache


def test_a_step_is_computed_once_and_reloaded_bit_identically(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        rng = np.random.default_rng(0)
        return {"prompt_TxD": rng.normal(size=(3, 4)).astype(np.float32), "eps": 7.99, "n": 5}

    first = StepCache(tmp_path / "run")("full_dp", compute)
    again = StepCache(tmp_path / "run")  # a new process: nothing in memory
    second = again("full_dp", compute)
    assert len(calls) == 1 and again.loaded == ["full_dp"]
    for k in first:
        np.testing.assert_array_equal(second[k], first[k])
        assert second[k].dtype == first[k].dtype
    assert float(second["eps"]) == 7.99 and int(second["n"]) == 5


def test_a_step_killed_mid_compute_or_mid_write_is_not_kept(tmp_path, monkeypatch):
    cache = StepCache(tmp_path / "run")

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache("student", killed)
    assert not (tmp_path / "run" / "student.npz").exists()

    def half_written(path, **arrays):
        pathlib.Path(path).write_bytes(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(KeyboardInterrupt):
        cache("student", lambda: {"x": 1})
    monkeypatch.undo()
    assert not (tmp_path / "run" / "student.npz").exists()
    assert int(cache("student", lambda: {"x": 2})["x"]) == 2 and cache.loaded == []


def test_no_directory_caches_nothing_and_bad_steps_are_refused(tmp_path):
    calls = []
    cache = StepCache(None)
    for _ in range(2):
        cache("a", lambda: calls.append(1) or {"x": 1.0})
    assert len(calls) == 2
    with pytest.raises(ValueError, match="letters, digits"):
        StepCache(tmp_path)("../escape", lambda: {"x": 1})
    with pytest.raises(ValueError, match="not numeric arrays"):
        StepCache(tmp_path)("eps", lambda: {"epsilon": None})


def test_stashed_steps_survive_a_lost_cache_directory(tmp_path):
    """Keys in stash_keys are copied to the stash; a fresh machine (empty cache directory)
    reads them from there without computing; other keys are not stashed."""
    calls = []

    def compute(v):
        return lambda: calls.append(v) or {"prompt_TxD": np.full((2, 3), v, np.float32)}

    stash = tmp_path / "stashes" / "post" / "sst2-seed1-abc"
    cache = StepCache(tmp_path / "machine1", stash=stash, stash_keys=("full", "full_dp"))
    cache("full", compute(1.0))
    cache("student", compute(2.0))
    assert sorted(p.name for p in stash.iterdir()) == ["full.npz"]  # no temp file left
    fresh = StepCache(tmp_path / "machine2", stash=stash, stash_keys=("full", "full_dp"))
    got = fresh("full", compute(9.0))
    np.testing.assert_array_equal(got["prompt_TxD"], np.full((2, 3), 1.0, np.float32))
    assert fresh.loaded == ["full"] and (tmp_path / "machine2" / "full.npz").exists()
    fresh("student", compute(3.0))  # machine-local: recomputed on the new machine
    assert calls == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="stash directory"):
        StepCache(tmp_path / "m", stash_keys=("full",))
