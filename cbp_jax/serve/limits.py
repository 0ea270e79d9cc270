"""Per-request limits of the network service, checked before any budget or compute.

The provider's `validate_request` checks a request against the model (kinds, shapes,
token ranges, finite payloads); these limits bound what one request may ask of the server
(bytes, population, batch, sequence, prompt length, candidates, total work), so that one
caller cannot stall the shared compiled scoring call or exhaust its memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbp_jax.service.requests import MalformedRequestError, ScoreRequest


class PayloadTooLargeError(MalformedRequestError):
    """The request body is larger than `ServeLimits.max_body_bytes` (HTTP 413)."""


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """Upper bounds per request. work = population x batch x (sequence + prompt) tokens."""

    max_body_bytes: int = 8 << 20
    max_population: int = 256
    max_batch: int = 64
    max_seq_len: int = 512
    max_prompt_len: int = 64
    max_candidates: int = 64
    max_words: int = 8
    max_work_tokens: int = 1 << 20

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ServeLimits.{f.name} must be a positive int, got {value!r}")

    def check(self, req: ScoreRequest) -> None:
        """Raise MalformedRequestError naming the first limit the request exceeds."""
        tokens, cands = np.asarray(req.tokens_BxS), np.asarray(req.candidates_CxW)
        if tokens.ndim != 2 or cands.ndim != 2:
            raise MalformedRequestError(
                f"tokens and candidates must be 2-D, got {tokens.shape} and {cands.shape}"
            )
        b, s = tokens.shape
        c, w = cands.shape
        payload = req.payload
        if req.kind in ("prompt", "task_vector", "deep_prompt") and payload is not None:
            axis = 1 if req.kind == "deep_prompt" else 0
            if payload.ndim <= axis:
                raise MalformedRequestError(f"{req.kind!r} payload has too few axes")
            p = int(payload.shape[axis])
            t = int(payload.shape[axis + 1]) if req.kind != "task_vector" else 0
            if req.kind != "task_vector" and payload.ndim < axis + 3:
                raise MalformedRequestError(f"{req.kind!r} payload has too few axes")
        else:
            p, t = 1, 0
        for name, got, limit in (
            ("population", p, self.max_population),
            ("batch", b, self.max_batch),
            ("sequence length", s, self.max_seq_len),
            ("prompt length", t, self.max_prompt_len),
            ("candidate classes", c, self.max_candidates),
            ("words per class", w, self.max_words),
            ("work (population x batch x tokens)", p * b * (s + t), self.max_work_tokens),
        ):
            if got > limit:
                raise MalformedRequestError(f"{name} {got} exceeds this server's limit {limit}")
