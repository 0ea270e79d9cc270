"""A sweep's finished runs as one committed file, so a fresh clone regenerates its tables and
resumes it where it stopped (`checkpoints/`, where the runs live, is not in git).

`save(cfg, path)` writes one JSON line per finished run of the plan: its run folder, relative
to the repository root, and its result.json. `restore(cfg, path)` writes back the result.json
of every recorded run that the plan contains and whose folder has none. A record whose
RunConfig differs from the planned one raises: its result belongs to another protocol.
Paths inside the recorded config (the generator, the output folder) are stored relative to
the repository root, so the file means the same in any clone.

The CBP runs' task vectors and ES checkpoints are not recorded: a restored run counts as
finished for the tables and the sweep, and `cbp_predictions.py` needs the run itself.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

from cbp_sweep import ROOT, SweepConfig, planned

from cbp_jax.run import RunConfig

PATH_FIELDS = ("generator", "out")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def _relative(path: str) -> str:
    p = pathlib.Path(path)
    return str(p.relative_to(ROOT)) if p.is_absolute() and p.is_relative_to(ROOT) else path


def _absolute(path: str) -> str:
    return str(ROOT / path) if path and not pathlib.Path(path).is_absolute() else path


def _portable(config: dict) -> dict:
    return {k: _relative(v) if k in PATH_FIELDS and v else v for k, v in config.items()}


def save(cfg: SweepConfig, path: pathlib.Path) -> int:
    """Write every finished planned run to `path` (JSON lines); returns how many."""
    lines = []
    for rc in planned(cfg):
        result_file = rc.run_dir / "result.json"
        if not result_file.exists():
            continue
        result = json.loads(result_file.read_text())
        result["config"] = _portable(result["config"])
        lines.append(json.dumps({"run": _relative(str(rc.run_dir)), "result": result}))
    path.write_text("".join(line + "\n" for line in lines))
    return len(lines)


def restore(cfg: SweepConfig, path: pathlib.Path) -> int:
    """Write back the result.json of recorded runs the plan holds and lacks; returns how many."""
    plan = {_relative(str(rc.run_dir)): rc for rc in planned(cfg)}
    restored = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        record = json.loads(line)
        rc = plan.get(record["run"])
        if rc is None:
            continue  # a run of another plan (other tasks, seeds or methods)
        expected = _portable(dataclasses.asdict(rc))
        # a field added to RunConfig after the run was recorded counts at its default
        recorded = {**_DEFAULTS, **record["result"]["config"]}
        if recorded != expected:
            diff = sorted(k for k in expected if recorded.get(k) != expected[k])
            raise ValueError(
                f"{path}:{number}: the recorded run {record['run']} differs from the planned "
                f"one in {diff}; remove the record or the folder of the other protocol"
            )
        result_file = rc.run_dir / "result.json"
        if result_file.exists():
            continue
        result = dict(record["result"])
        result["config"] = {
            k: _absolute(v) if k in PATH_FIELDS else v for k, v in result["config"].items()
        }
        result_file.parent.mkdir(parents=True, exist_ok=True)
        result_file.write_text(json.dumps(result, indent=1))
        restored += 1
    return restored
