"""A study through a local Ray (2 workers) gives the serial path's records and table bytes;
a cell whose try fails (an exception, or its worker process killed) is tried again and
recorded once; a cell that fails every try is reported while the others are recorded.

The runner is a fake (a small jitted program, then a fixed result per cell) so the test is
about the fan-out, not the model. Ray starts once for the file with 2 CPUs, no dashboard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import ray

from cbp_jax.experiment.layer import run_cells
from cbp_jax.experiment.ray_runner import RayConfig, run_cells_ray, worker_count
from cbp_jax.experiment.records import RecordStore
from studies.paper_budget.plan import PaperBudgetConfig
from studies.paper_budget.report import write_report
from tests.test_experiment_layer import _fake_result

# Ray workers cannot import this test module: its functions and classes travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

CFG = PaperBudgetConfig()
CELLS = CFG.cells()[:6]  # zero-shot and CBP z0, both tasks, seeds 0-1
TIMEOUT = 600.0  # seconds without any cell finishing: a hung study fails, never a slow one


@dataclasses.dataclass(frozen=True)
class FakeRunner:
    """A picklable runner factory. Each call to the runner it makes logs the cell to
    `calls`, compiles and runs a small program, then, per `fail[run]`: "raise" once,
    "die" once (the worker process exits), "always" raise; else return the cell's result."""

    results: tuple[tuple[str, str], ...]  # (run dir name, its result as JSON)
    calls: str
    fail: tuple[tuple[str, str], ...] = ()

    def __call__(self):
        results, fail = dict(self.results), dict(self.fail)
        program = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())

        def runner(rc):
            run = rc.run_dir.name
            with open(self.calls, "a") as f:
                f.write(f"{run} {os.getpid()}\n")
            program(jnp.ones((8, 8)) * rc.seed).block_until_ready()
            mode, marker = fail.get(run), pathlib.Path(f"{self.calls}.{run}.failed")
            if mode == "always" or (mode and not marker.exists()):
                marker.touch()
                if mode == "die":
                    os._exit(1)
                raise RuntimeError(f"planned failure of {run}")
            return json.loads(results[run])

        return runner


def _runner(tmp_path, **fail) -> FakeRunner:
    rng = np.random.default_rng(0)
    results = {c.config.run_dir.name: _fake_result(c.name, rng) for c in CELLS}
    for r in results.values():  # a runner's own figures win: the records are then identical
        r |= {"seconds": 100.0, "cpu_seconds": 90.0, "commit": "c0ffee",
              "dtype": {"dtype": "float32"}}  # fmt: skip
    runs = {c.name: c.config.run_dir.name for c in CELLS}
    return FakeRunner(
        tuple((k, json.dumps(v)) for k, v in results.items()),
        str(tmp_path / "calls.txt"),
        tuple((runs[name], mode) for name, mode in fail.items()),
    )


def _calls(runner: FakeRunner) -> list[str]:
    path = pathlib.Path(runner.calls)
    return [ln.split()[0] for ln in path.read_text().splitlines()] if path.exists() else []


def _lines(store: RecordStore) -> list[dict]:
    return [json.loads(x) for x in store.path.read_text().splitlines()]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def _ray_cfg(tmp_path, **kw) -> RayConfig:
    return RayConfig(compile_cache=str(tmp_path / "jax_cache"), idle_timeout_s=TIMEOUT, **kw)


def test_ray_config_checks_and_worker_count(monkeypatch):
    with pytest.raises(ValueError, match="retries"):
        RayConfig(retries=-1)
    with pytest.raises(ValueError, match="num_cpus sizes a local Ray"):
        RayConfig(address="auto", num_cpus=2)
    with pytest.raises(ValueError, match="positive"):
        RayConfig(resources=(("TPU", 0),))
    assert RayConfig(gpus_per_cell=1, cpus_per_cell=0).asks() == {"GPU": 1}
    assert worker_count(RayConfig(), {"CPU": 2.0}, 6) == 2
    assert worker_count(RayConfig(), {"CPU": 8.0}, 3) == 3  # no more workers than cells
    assert worker_count(RayConfig(gpus_per_cell=1), {"CPU": 16.0, "GPU": 4.0}, 9) == 4
    assert worker_count(RayConfig(workers=1), {"CPU": 8.0}, 5) == 1
    with pytest.raises(RuntimeError, match="no room for one cell"):
        worker_count(RayConfig(resources=(("TPU", 4),)), {"CPU": 8.0}, 2)
    # without the cluster extra the module still imports; a study with work to do says why
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[cluster\]'"):
        run_cells_ray(CELLS, RecordStore("/nonexistent/runs.jsonl"), _runner, RayConfig())


def test_ray_study_gives_the_serial_records_and_table_bytes(tmp_path, local_ray):
    serial_runner = _runner(tmp_path / "s")
    (tmp_path / "s").mkdir()
    serial = RecordStore(tmp_path / "s" / "runs.jsonl")
    run_cells(CELLS, serial, serial_runner(), log=lambda _: 0)
    # the Ray study starts with the first two cells already recorded: they are not rerun
    (tmp_path / "r").mkdir()
    path = tmp_path / "r" / "runs.jsonl"
    path.write_text("".join(ln + "\n" for ln in serial.path.read_text().splitlines()[:2]))
    runner = _runner(tmp_path / "r")
    recs, progress = run_cells_ray(
        CELLS, RecordStore(path), runner, _ray_cfg(tmp_path), log=lambda _: 0
    )
    assert sorted(_calls(runner)) == sorted(c.config.run_dir.name for c in CELLS[2:])
    assert (progress.reused, progress.ran, progress.failed) == (2, 4, [])
    assert [r["name"] for r in recs] == [c.name for c in CELLS]  # plan order
    store = RecordStore(path)
    assert {r["name"]: r for r in _lines(store)} == {r["name"]: r for r in _lines(serial)}
    md = write_report(CFG, CFG.cells(), store, tmp_path / "r")
    assert md.read_bytes() == write_report(CFG, CFG.cells(), serial, tmp_path / "s").read_bytes()
    # two worker processes shared the cells and the compilation cache, and say what compiled
    assert 1 <= len(progress.workers) <= 2
    assert sum(len(w["cells"]) for w in progress.workers.values()) == 4
    for w in progress.workers.values():
        assert w["compilations"] + w["cache_hits"] >= 1
        assert 0 <= w["compile_seconds"] <= w["seconds"] and w["run_seconds"] >= 0
    assert any((tmp_path / "jax_cache").iterdir())


def test_failed_tries_are_retried_and_every_cell_recorded_once(tmp_path, local_ray):
    """One cell raises once, one kills its worker once, one raises every time (retries=1):
    the first two are recorded on their second try, the third is reported, the rest
    recorded once each; fixed, a second study runs only the reported cell."""
    first, killed, bad = CELLS[1], CELLS[4], CELLS[2]
    runner = _runner(tmp_path, **{first.name: "raise", killed.name: "die", bad.name: "always"})
    store = RecordStore(tmp_path / "runs.jsonl")
    logged, cfg = [], _ray_cfg(tmp_path, retries=1)
    recs, progress = run_cells_ray(CELLS, store, runner, cfg, log=logged.append)
    names = [r["name"] for r in _lines(store)]
    assert sorted(names) == sorted(c.name for c in CELLS if c is not bad)  # each once
    assert progress.ran == len(CELLS) - 1 and len(recs) == len(CELLS) - 1
    assert [name for name, _ in progress.failed] == [bad.name]
    assert "planned failure" in progress.failed[0][1]
    calls = _calls(runner)
    for cell in (first, killed, bad):  # tried twice each: one try and one retry
        assert calls.count(cell.config.run_dir.name) == 2, cell.name
        assert any(ln.startswith(f"{cell.name} failed") for ln in logged)
    assert any("RuntimeError" in ln and first.name in ln for ln in logged)
    # fixed, the study reruns only the reported cell
    fixed = dataclasses.replace(runner, fail=(), calls=str(tmp_path / "calls2.txt"))
    recs, progress = run_cells_ray(CELLS, RecordStore(store.path), fixed, cfg, log=lambda _: 0)
    assert _calls(fixed) == [bad.config.run_dir.name]
    assert (progress.reused, progress.ran, len(recs)) == (5, 1, 6)
    assert sorted(r["name"] for r in _lines(store)) == sorted(c.name for c in CELLS)
