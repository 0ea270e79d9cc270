"""Provider-side validation of a `ScoreRequest` against the model's public shapes.

The messages themselves (and their cost in calls) are defined in `cbp_jax.contract`;
`validate_request` is what every provider (in process or HTTP) checks before charging.
"""

from __future__ import annotations

import numpy as np

from cbp_jax.contract import PAYLOAD_KINDS, MalformedRequestError, ScoreRequest


def _fail(msg: str):
    raise MalformedRequestError(msg)


def validate_request(req: ScoreRequest, *, vocab_size: int, payload_shape: dict) -> None:
    """Check a request against the model's public shapes; raise MalformedRequestError.

    payload_shape maps an accepted kind to its expected shape with None for free axes
    (P, T), e.g. {"prompt": (None, None, 576)}.
    """
    if req.kind not in PAYLOAD_KINDS:
        _fail(f"unknown request kind {req.kind!r}; known: {PAYLOAD_KINDS}")
    if req.kind not in payload_shape:
        _fail(
            f"this service does not accept {req.kind!r} requests; "
            f"it accepts {sorted(payload_shape)}"
        )
    tokens, mask, cands = (
        np.asarray(x) for x in (req.tokens_BxS, req.mask_BxS, req.candidates_CxW)
    )
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        _fail(f"tokens must be a non-empty B x S array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer) or not np.issubdtype(cands.dtype, np.integer):
        _fail(f"token and candidate ids must be integers, got {tokens.dtype} and {cands.dtype}")
    if mask.shape != tokens.shape:
        _fail(f"mask shape {mask.shape} != tokens shape {tokens.shape}")
    if not np.isin(mask, (0, 1)).all() or (mask.sum(axis=1) == 0).any():
        _fail("mask must be 0/1 with at least one real token per row")
    if cands.ndim != 2 or cands.size == 0:
        _fail(f"candidates must be a non-empty C x W array, got shape {cands.shape}")
    for name, ids in (("token", tokens), ("candidate", cands)):
        if ids.min() < 0 or ids.max() >= vocab_size:
            _fail(f"{name} ids out of range [0, {vocab_size}): min {ids.min()}, max {ids.max()}")
    expected = payload_shape[req.kind]
    if expected is None:
        if req.payload is not None:
            _fail(f"{req.kind!r} requests carry no payload")
        return
    payload = req.payload
    if payload is None or not hasattr(payload, "shape"):
        _fail(f"{req.kind!r} request needs an array payload")
    if not np.issubdtype(np.asarray(payload).dtype, np.floating):
        _fail(f"payload must be floating point, got {np.asarray(payload).dtype}")
    if len(payload.shape) != len(expected) or any(
        e is not None and e != g for e, g in zip(expected, payload.shape, strict=True)
    ):
        axes = " x ".join("*" if e is None else str(e) for e in expected)
        _fail(f"{req.kind!r} payload must have shape {axes}, got {tuple(payload.shape)}")
    if 0 in payload.shape:
        _fail(f"{req.kind!r} payload is empty: shape {tuple(payload.shape)}")
    if not np.isfinite(np.asarray(payload)).all():
        _fail(f"{req.kind!r} payload contains NaN or inf")
