"""The provider/user contract: everything that crosses the black-box boundary, in one file.

User -> provider: a `ScoreRequest` (payload, token ids, mask, candidate ids; no labels).
Provider -> user: a `ScoreResponse` (candidate log-probs and what the request cost; never
weights, hidden states or full logits) and `PublicInfo`. The errors a scoring service may
raise live here, so both sides and both transports (in process, HTTP) name them alike;
`ScoringAPI` is what any scoring service offers the user's engine. One API call is one
candidate scored on one batch, whatever its size (docs/methods.md). This module imports
nothing from the package (tests/test_import_boundary.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

PAYLOAD_KINDS = ("none", "prompt", "deep_prompt", "task_vector")
# Each kind's payload: (axis count, population P axis, prompt length T axis).
PAYLOAD_AXES = {"prompt": (3, 0, 1), "deep_prompt": (4, 1, 2), "task_vector": (2, 0, None)}


# ---------------------------------------------------------------------------- errors


class MalformedRequestError(ValueError):
    """A request's shapes, dtypes or values are not acceptable (HTTP 400; 413 if too big)."""


class BudgetExhaustedError(RuntimeError):
    """The API budget cannot cover the requested calls (HTTP 402); nothing was charged."""


class RequestIdConflictError(ValueError):
    """A request id was reused for a different request body (HTTP 409)."""


class AuthenticationError(PermissionError):
    """The service refused the API key (HTTP 401)."""


class ServiceUnavailableError(RuntimeError):
    """The service did not answer within the retry deadline (HTTP 429 / 5xx / no answer)."""


class GeneratorMismatchError(ValueError):
    """A generator (or task vector) is used with a model or generator it was not made for."""


def payload_dims(kind: str, payload) -> tuple[int, int]:
    """(population P, prompt length T) of a payload, its axis count checked before any
    axis is read; a kind without payload is P = 1, T = 0 (validation refuses a payload)."""
    if kind not in PAYLOAD_AXES or payload is None:
        return 1, 0
    ndim, p_axis, t_axis = PAYLOAD_AXES[kind]
    shape = np.shape(payload)
    if len(shape) != ndim:
        raise MalformedRequestError(
            f"{kind!r} payload must have {ndim} axes, got shape {tuple(shape)}"
        )
    return int(shape[p_axis]), 0 if t_axis is None else int(shape[t_axis])


# How the HTTP service answers each error (and the client raises it again); an unknown
# key is 401 (`AuthenticationError`), a body over the size limit 413 (a malformed request).
HTTP_STATUS: dict[type[Exception], int] = {
    MalformedRequestError: 400,
    AuthenticationError: 401,
    BudgetExhaustedError: 402,
    RequestIdConflictError: 409,
}


# ---------------------------------------------------------------------------- messages


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


@dataclasses.dataclass(frozen=True)
class PublicInfo:
    """What a provider publishes about its model: shapes and scale statistics.

    hidden_std: per layer l, the std of the hidden states entering layer l on a fixed public
    text, outliers clipped at 3 sigma ([0]: the word embeddings'), which BBTv2's per-layer
    projections use (`service/hidden_stats.py`); () where a provider does not publish them.
    """

    model_name: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    embedding_std: float  # BBT's projection scale uses it (docs/methods.md)
    accepted_kinds: tuple[str, ...]
    tokenizer: Any
    hidden_std: tuple[float, ...] = ()


# ---------------------------------------------------------------------------- CBP


@dataclasses.dataclass(frozen=True, eq=False)
class CBPRelease:
    """What a CBP provider gives a user for stage 2: r, z0 and names. No weights
    (`prompts.artifact.GeneratorArtifact.release()`)."""

    task_dims: int
    z0_R: np.ndarray
    generator_id: str
    model_name: str
    tasks: tuple[str, ...]
    domain: str | None = None  # of the tasks it was trained on (None: unknown)

    def __post_init__(self):
        z0 = np.asarray(self.z0_R, np.float32)
        if z0.shape != (self.task_dims,):
            raise ValueError(f"z0 must have shape ({self.task_dims},), got {z0.shape}")
        object.__setattr__(self, "z0_R", z0)
        object.__setattr__(self, "tasks", tuple(self.tasks))

    def as_json(self) -> dict:
        """What a server publishes under /v1/info's "cbp_release" (z0 as a list)."""
        return {**dataclasses.asdict(self), "z0_R": self.z0_R.tolist()}


# ---------------------------------------------------------------------------- service


@runtime_checkable
class ScoringAPI(Protocol):
    """What a scoring service offers the user's engine (run_blackbox, customize, sweeps,
    evaluation), whatever the transport.

    score: validate, charge `request.calls` and return candidate log-probs (raises
      MalformedRequestError or BudgetExhaustedError, charging nothing).
    public_info: the provider's `PublicInfo`.
    calls_used / calls_remaining: calls charged so far; calls left (None: unlimited).
    reserve: charge (in process) or check (HTTP) `calls` that a compiled loop is about to
      make through `oracle`, or raise BudgetExhaustedError.
    oracle: a jittable handle `(payload, buckets, candidates_CxW) -> P x B x C x W`
      log-probs for requests of `kind`; one oracle call = one batch = P calls.
    """

    @property
    def calls_used(self) -> int: ...

    @property
    def calls_remaining(self) -> int | None: ...

    def score(self, request: ScoreRequest) -> ScoreResponse: ...

    def public_info(self) -> PublicInfo: ...

    def reserve(self, calls: int) -> None: ...

    def oracle(self, kind: str) -> Any: ...


def check_buckets(buckets) -> tuple:
    """An oracle's `buckets` argument (the length buckets of one batch) as a tuple of
    (tokens_BxS, mask_BxS) pairs, or ValueError."""
    if not isinstance(buckets, tuple | list) or not buckets:
        raise ValueError("buckets must be a non-empty tuple of (tokens_BxS, mask_BxS) pairs")
    for i, bucket in enumerate(buckets):
        if not isinstance(bucket, tuple | list) or len(bucket) != 2:
            raise ValueError(f"bucket {i} must be a (tokens_BxS, mask_BxS) pair")
        if bucket[0].ndim != 2 or bucket[0].shape != bucket[1].shape:
            raise ValueError(
                f"bucket {i}: tokens {bucket[0].shape} and mask {bucket[1].shape} must be "
                "the same B x S"
            )
    return tuple(buckets)
