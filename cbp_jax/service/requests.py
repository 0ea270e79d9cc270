"""The two messages that cross the boundary, and their validation.

`ScoreRequest` fields are exactly what a user may send; it has no label field and the
service never sees one. `ScoreResponse` carries log-probabilities of the candidate answer
tokens and what the request cost, nothing else.

Cost (BBT's unit, METHODS.md): one API call = one candidate prompt scored on one batch of
examples, whatever the batch's size, so a request costs its population P in calls. The
work is reported beside it: examples scored (P x B) and tokens scored (P x the real,
unpadded text tokens of the batch).
"""

from __future__ import annotations

import dataclasses

import numpy as np

PAYLOAD_KINDS = ("none", "prompt", "deep_prompt", "task_vector")


class MalformedRequestError(ValueError):
    """A request's shapes, dtypes or values are not acceptable."""


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Score a population of P candidates on B examples.

    kind: "none" (template only, P = 1), "prompt" (payload P x T x D soft prompts),
      "deep_prompt" (payload L x P x T x D per-layer prompts), or "task_vector"
      (payload P x R, turned into prompts by the provider's generator, CBP).
    tokens_BxS / mask_BxS: left- or right-padded token ids of the rendered inputs.
    candidates_CxW: token ids of W label words for each of C classes (or options).
    """

    kind: str
    payload: np.ndarray | None
    tokens_BxS: np.ndarray
    mask_BxS: np.ndarray
    candidates_CxW: np.ndarray

    @property
    def population(self) -> int:
        if self.kind == "none":
            return 1
        return int(self.payload.shape[1 if self.kind == "deep_prompt" else 0])

    @property
    def num_examples(self) -> int:
        return int(self.tokens_BxS.shape[0])

    @property
    def calls(self) -> int:
        """API calls this request costs: one per candidate, whatever the batch size."""
        return self.population

    @property
    def examples(self) -> int:
        """Examples scored: P x B."""
        return self.population * self.num_examples

    @property
    def tokens(self) -> int:
        """Text tokens scored: P x the batch's real (mask 1) tokens."""
        return self.population * int(np.asarray(self.mask_BxS).sum())


@dataclasses.dataclass(frozen=True)
class ScoreResponse:
    """logprobs_PxBxCxW: log-probabilities of each candidate token; calls: what was charged
    (P); examples / tokens: the examples (P x B) and text tokens scored."""

    logprobs_PxBxCxW: np.ndarray
    calls: int
    examples: int = 0
    tokens: int = 0


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
