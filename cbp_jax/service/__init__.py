"""Provider side of the black-box boundary: a scoring service over a model it never exposes.

What crosses (user -> provider): a `ScoreRequest` (prompt payload, token ids, mask,
candidate ids). What comes back: a `ScoreResponse` (log-probs of the candidate tokens).
Labels are not a field of any request; weights are not a field of any response.
"""

from cbp_jax.service.budget import ApiBudget, BudgetExhaustedError
from cbp_jax.service.provider import PublicInfo, ScoringService
from cbp_jax.service.requests import MalformedRequestError, ScoreRequest, ScoreResponse

__all__ = [
    "ApiBudget",
    "BudgetExhaustedError",
    "MalformedRequestError",
    "PublicInfo",
    "ScoreRequest",
    "ScoreResponse",
    "ScoringService",
]
