"""A tuned prompt saved beside its run (BBT's A z, BBTv2's deep prompt, prompt tuning's) so
`cbp-jax predict` can reload it: the payload, its request kind, the task, the method and the
fingerprint of its model (`ckpt.save_arrays` layout); loading it for another model raises
`GeneratorMismatchError` before any array is read.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from cbp_jax.ckpt import read_meta, restore_arrays, save_arrays
from cbp_jax.model.fingerprint import check_model, model_fingerprint

PROMPT_FORMAT = "cbp-jax-prompt/1"
PROMPT_KINDS = ("prompt", "deep_prompt")


@dataclasses.dataclass(frozen=True, eq=False)
class SavedPrompt:
    kind: str
    payload: np.ndarray  # one candidate: leading axis of size 1 ("prompt") or layers x 1
    meta: dict


def save_prompt(
    path, kind: str, payload, *, task: str, model, method: str, p0_token_ids=None
) -> pathlib.Path:
    """Save one tuned prompt (`payload` as sent in a ScoreRequest of `kind`). BBT/BBTv2's
    payload is A z; `p0_token_ids` names the provider's p0 it was scored with (public
    vocabulary ids), so a reload scores it with the same p0."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"kind must be one of {PROMPT_KINDS}, got {kind!r}")
    payload = np.asarray(payload, np.float32)
    if not np.isfinite(payload).all():
        raise ValueError("prompt payload must be finite")
    meta = {
        "format": PROMPT_FORMAT,
        "kind": kind,
        "shape": list(payload.shape),
        "task": task,
        "method": method,
        "model": model_fingerprint(model),
    }
    if p0_token_ids is not None:
        meta["p0_token_ids"] = [int(i) for i in p0_token_ids]
    return save_arrays(path, {"payload": payload}, meta)


def load_prompt(path, expected_model=None) -> SavedPrompt:
    """Load a saved prompt; with `expected_model`, raise if it was tuned on another model."""
    meta = read_meta(path, PROMPT_FORMAT)
    if expected_model is not None:
        check_model(meta["model"], expected_model, what="prompt")
    target = {"payload": np.zeros(meta["shape"], np.float32)}
    return SavedPrompt(meta["kind"], restore_arrays(path, target)["payload"], meta)
