"""Local text privatization (d_chi-privacy), RAPT prompt tuning and inversion attacks."""

from cbp_jax.privacy.attacks import (
    count_attack,
    fit_count_attack,
    identity_attack,
    nearest_public_attack,
    recovery_rate,
)
from cbp_jax.privacy.dchi import nearest_ids, privatize_ids, privatize_text, sample_noise
from cbp_jax.privacy.inputs import encode_private, privatized_inputs
from cbp_jax.privacy.rapt import RAPTConfig, rapt_accuracy, tune_rapt

__all__ = [
    "RAPTConfig",
    "count_attack",
    "encode_private",
    "fit_count_attack",
    "identity_attack",
    "nearest_ids",
    "nearest_public_attack",
    "privatize_ids",
    "privatize_text",
    "privatized_inputs",
    "rapt_accuracy",
    "recovery_rate",
    "sample_noise",
    "tune_rapt",
]
