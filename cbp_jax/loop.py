"""One training loop for every method: a state pytree, a step function, and everything around
them written once (Orbax checkpoint and exact resume, the JSONL step log, the progress bar).

`LoopState`: `tree` (named arrays: ES or optimiser state, PRNG key, best so far; typed keys
are stored as key data), `step` (units done: steps, generations, epochs, BBTv2 rounds) and
`info` (JSON, saved as the checkpoint's meta with {step_key: step}, so each method keeps its
checkpoint layout). `run_loop(step_fn, state, n_steps, ...)`: step_fn(state) -> (state, log
rows) advances one unit or more; the loop logs, checkpoints every `every` units and at the
end, and on a `run_dir` holding a checkpoint restores it (`on_resume` checks and charges it)
and cuts the log back to it, so a killed run resumes to the uninterrupted result.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm import tqdm

from cbp_jax.ckpt import Checkpointer


@struct.dataclass
class LoopState:
    """A run between steps: named arrays, units done, JSON info (see the module docstring)."""

    tree: dict[str, Any]
    step: int = struct.field(pytree_node=False, default=0)
    info: dict = struct.field(pytree_node=False, default_factory=dict)


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _raw(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def save_state(ckpt: Checkpointer, state: LoopState, step_key: str = "step") -> None:
    ckpt.save(state.step, _raw(state.tree), {step_key: state.step, **state.info})


def restore_state(ckpt: Checkpointer, like: LoopState, step_key: str = "step") -> LoopState:
    """The latest checkpoint, in the structure (and key types) of `like`."""
    tree, meta = ckpt.restore(_raw(like.tree))
    wrap = jax.tree.map(
        lambda old, new: jax.random.wrap_key_data(new) if _is_key(old) else new, like.tree, tree
    )
    step = meta.pop(step_key)
    return LoopState(wrap, step, meta)


def optax_step(loss_fn, opt, has_aux: bool = False):
    """step(params, opt_state, *args) -> (params, opt_state, value, grads): the value and
    gradient of loss_fn(params, *args) and one update of the optax optimiser `opt`."""

    def step(params, opt_state, *args):
        value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *args)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, grads

    return step


def run_loop(
    step_fn: Callable[[LoopState], tuple[LoopState, list[dict]]],
    state: LoopState,
    n_steps: int,
    *,
    run_dir: str | pathlib.Path | None = None,
    every: int = 1,
    step_key: str = "step",
    start: Callable[[LoopState], LoopState] | None = None,
    on_resume: Callable[[LoopState], None] | None = None,
    on_step: Callable[[int, dict], None] | None = None,
    desc: str = "",
    postfix: tuple[str, ...] = ("loss",),
    progress: bool = True,
) -> tuple[LoopState, list[dict], int]:
    """Run step_fn until `n_steps` units are done; returns (state, log rows, resumed at).

    start(state): run once on a fresh state (not a resumed one); a new state it returns is
    checkpointed at once (the start point's dev evaluation: a resumed run must not pay for
    it twice).
    on_resume(state): called with a restored state before any step (config checks, calls
    charged before the interruption). on_step(step, last row): after each step_fn call and
    its checkpoint. postfix: keys of the last row shown on the progress bar.
    """
    ckpt = Checkpointer(run_dir) if run_dir is not None else None
    resumed_at = 0
    if ckpt is not None and ckpt.latest_step() is not None:
        state = restore_state(ckpt, state, step_key)
        resumed_at = state.step
        if on_resume is not None:
            on_resume(state)
    elif start is not None:
        fresh, state = state, start(state)
        if ckpt is not None and state is not fresh:
            save_state(ckpt, state, step_key)
    history, log = [], None
    if run_dir is not None:  # a killed run may have logged past its last checkpoint
        path = pathlib.Path(run_dir) / "log.jsonl"
        if state.step > 0 and path.exists():
            history = [json.loads(x) for x in path.read_text().splitlines()]
            history = [r for r in history if r[step_key] <= state.step]
        write_log(run_dir, history)
        log = path.open("a")
    bar = tqdm(total=int(n_steps), initial=state.step, desc=desc, disable=not progress)
    try:
        while state.step < n_steps:
            before = state.step
            state, rows = step_fn(state)
            history.extend(rows)
            if log is not None:
                log.write("".join(json.dumps(r) + "\n" for r in rows))
                log.flush()
            if ckpt is not None and (state.step % every == 0 or state.step >= n_steps):
                save_state(ckpt, state, step_key)
            bar.update(state.step - before)
            if rows:
                shown = {k: rows[-1][k] for k in postfix if k in rows[-1]}
                bar.set_postfix({k: f"{v:.3f}" if isinstance(v, float) else v
                                 for k, v in shown.items()})  # fmt: skip
            if on_step is not None:
                on_step(state.step, rows[-1] if rows else {})
    finally:
        bar.close()
        if log is not None:
            log.close()
        if ckpt is not None:
            ckpt.close()
    return state, history, resumed_at


def write_log(run_dir: str | pathlib.Path, rows: list[dict]) -> None:
    """(Re)write `<run_dir>/log.jsonl`, one JSON row a line."""
    path = pathlib.Path(run_dir) / "log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_epochs(step, evaluate, params, opt_state, batches, epochs, *, names, kept=None, desc="",
               progress=True):  # fmt: skip
    """Minibatch epochs with the best dev epoch kept, one epoch a `run_loop` step.

    step(params, opt_state, idx) -> (params, opt_state, losses: a scalar or a tuple);
    batches() -> the index arrays of an epoch; evaluate(params) -> (dev loss, dev acc); names:
    the log names of the epoch's mean losses; kept(params): what is kept (default: params).
    The best is the highest dev accuracy, ties to the lower dev loss. Returns (kept best,
    its dev accuracy, one log row per epoch).
    """
    kept = kept or (lambda p: p)

    def epoch(state):
        p, o, parts = state.tree["params"], state.tree["opt_state"], []
        for idx in batches():
            p, o, losses = step(p, o, jnp.asarray(idx))
            parts.append(jax.tree.map(float, losses))
        dev_loss, dev_acc = (float(x) for x in evaluate(p))
        means = np.atleast_1d(np.mean(parts, axis=0))
        row = {"epoch": state.step + 1, **{n: float(v) for n, v in zip(names, means, strict=True)}}
        row.update(dev_loss=dev_loss, dev_acc=dev_acc)
        tree, info = {**state.tree, "params": p, "opt_state": o}, state.info
        if (dev_acc, -dev_loss) > (info["best_acc"], -info["best_loss"]):
            tree, info = {**tree, "best": kept(p)}, {"best_acc": dev_acc, "best_loss": dev_loss}
        return LoopState(tree, state.step + 1, info), [row]

    tree = {"params": params, "opt_state": opt_state, "best": kept(params)}
    state = LoopState(tree, 0, {"best_acc": -1.0, "best_loss": float("inf")})
    state, history, _ = run_loop(
        epoch, state, epochs, step_key="epoch", desc=desc, postfix=("dev_acc",), progress=progress
    )
    return state.tree["best"], state.info["best_acc"], history
