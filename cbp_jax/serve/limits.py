"""Per-request limits of the network service, checked before any budget or compute.

The provider core's `validate_request` checks a request against the model (kinds, shapes,
token ranges, finite payloads); these limits bound what one request may ask of the server
(bytes, population, batch, sequence, prompt length, candidates, total work), so that one
caller cannot stall the shared compiled scoring call or exhaust its memory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbp_jax.contract import MalformedRequestError, ScoreRequest, payload_dims
from cbp_jax.overrides import check_positive


class PayloadTooLargeError(MalformedRequestError):
    """The request body is larger than `ServeLimits.max_body_bytes` (HTTP 413)."""


class WorkTooLargeError(PayloadTooLargeError):
    """A request's work is over `max_work_tokens` or a call's over `max_call_tokens` (HTTP
    413, naming the cap): split it (RemoteService does so by itself)."""


@dataclasses.dataclass(frozen=True)
class ServeLimits:
    """Upper bounds per request. One call (one candidate on one batch) may cover at most
    `max_call_tokens` = batch x (sequence + prompt) tokens, and one request at most
    `max_work_tokens` = population x batch x (sequence + prompt): a call's price is fixed
    (1) but its work is bounded, so no request costs the server much more than its calls
    say. All counts are Python ints (no overflow)."""

    max_body_bytes: int = 8 << 20
    max_population: int = 256
    max_batch: int = 256
    max_seq_len: int = 512
    max_prompt_len: int = 64
    max_candidates: int = 64
    max_words: int = 8
    max_work_tokens: int = 1 << 20
    max_call_tokens: int = 1 << 15

    def public(self) -> dict:
        """The limits as published in /v1/info (what one request may ask)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def __post_init__(self):
        check_positive(self)

    def check(self, req: ScoreRequest) -> None:
        """Raise MalformedRequestError naming the first limit the request exceeds."""
        tokens, cands = np.asarray(req.tokens_BxS), np.asarray(req.candidates_CxW)
        if tokens.ndim != 2 or cands.ndim != 2:
            raise MalformedRequestError(
                f"tokens and candidates must be 2-D, got {tokens.shape} and {cands.shape}"
            )
        b, s = tokens.shape
        c, w = cands.shape
        p, t = payload_dims(req.kind, req.payload)
        for name, got, limit in (
            ("population", p, self.max_population),
            ("batch", b, self.max_batch),
            ("sequence length", s, self.max_seq_len),
            ("prompt length", t, self.max_prompt_len),
            ("candidate classes", c, self.max_candidates),
            ("words per class", w, self.max_words),
        ):
            if got > limit:
                raise MalformedRequestError(f"{name} {got} exceeds this server's limit {limit}")
        for name, got, cap in (
            ("work (population x batch x tokens)", p * b * (s + t), "max_work_tokens"),
            ("tokens per call (batch x tokens)", b * (s + t), "max_call_tokens"),
        ):
            if got > getattr(self, cap):
                raise WorkTooLargeError(
                    f"{name} {got} exceeds this server's cap {cap} = {getattr(self, cap)}; "
                    "split the request (population, then batch)"
                )
