"""Local text privatization (d_chi-privacy), RAPT over prompt/prefix/LoRA tuning, and attacks."""

from cbp_jax.privacy.attack_suite import (
    count_attack,
    fit_count_attack,
    identity_attack,
    nearest_public_attack,
    recovery_rate,
)
from cbp_jax.privacy.dchi import nearest_ids, privatize_ids, privatize_text, sample_noise
from cbp_jax.privacy.inputs import encode_private, privatized_inputs
from cbp_jax.privacy.peft import PeftConfig, init_peft, peft_forward
from cbp_jax.privacy.rapt import RAPTConfig, rapt_accuracy, tune_rapt

__all__ = [
    "PeftConfig",
    "RAPTConfig",
    "count_attack",
    "encode_private",
    "fit_count_attack",
    "identity_attack",
    "init_peft",
    "nearest_ids",
    "nearest_public_attack",
    "peft_forward",
    "privatize_ids",
    "privatize_text",
    "privatized_inputs",
    "rapt_accuracy",
    "recovery_rate",
    "sample_noise",
    "tune_rapt",
]
