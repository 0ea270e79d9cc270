"""One process's runner of study cells: the model loaded once, a stashed checkpoint restored.

`make_runner(model, dtype, stashes)` loads the served model once and returns `runner(rc)`,
which restores the newest stashed ES checkpoint of `rc.run_dir` (experiment/in_flight.py) if
there is one, runs the cell (`cbp_jax.run.run`: the run then resumes from it) and adds the
process's compilations and compile vs run seconds to the result. The serial path calls it
in the study's process; the Ray path (ray_runner.py) builds one per worker. It lives in the
package (not in a study) so that Ray workers, which import only installed code, can use it.
"""

from __future__ import annotations

import pathlib

from cbp_jax.experiment.compile_cache import CompileStats
from cbp_jax.experiment.in_flight import restore


def make_runner(model_name: str, dtype: str, stashes: str | pathlib.Path):
    """The model loaded once, and a runner of one cell's RunConfig with it."""
    from cbp_jax.model import load_model
    from cbp_jax.run import run

    model = load_model(model_name, dtype=dtype)

    def runner(rc):
        if restore(stashes, rc.run_dir):
            print(f"restored a stashed checkpoint into {rc.run_dir}", flush=True)
        stats = CompileStats().start()
        result = run(rc, progress=False, model=model)
        result["compile"] = stats.stop()
        return result

    return runner
