"""Provider side of the black-box boundary: a scoring service over a model it never exposes.

What crosses (user -> provider): a `ScoreRequest` (prompt payload, token ids, mask,
candidate ids). What comes back: a `ScoreResponse` (log-probs of the candidate tokens).
Labels are not a field of any request; weights are not a field of any response. The
messages and errors are defined in `cbp_jax.contract` (re-exported here for convenience).
"""

from cbp_jax.contract import (
    BudgetExhaustedError,
    MalformedRequestError,
    PublicInfo,
    ScoreRequest,
    ScoreResponse,
)
from cbp_jax.service.budget import ApiBudget
from cbp_jax.service.provider import ScoringService

__all__ = [
    "ApiBudget",
    "BudgetExhaustedError",
    "MalformedRequestError",
    "PublicInfo",
    "ScoreRequest",
    "ScoreResponse",
    "ScoringService",
]
