"""POST (Wang et al., ICML 2025): private transfer of soft prompts via a distilled student.

1. `distill`: the provider distils a few-layer student from the teacher on public text.
2. `dp_tune_prompt`: the user tunes a soft prompt on the student, optionally with DP-SGD
   (noise calibrated by `noise_multiplier_for`, spent budget from `spent_epsilon`);
   audited by `loss_threshold_mia` and offline LiRA (`lira_audit`, `train_shadows`).
3. `transfer`: the provider moves the prompt to the teacher using only `PublicData`, with
   the weight alpha from public inputs (`public_alpha`).
"""

from cbp_jax.post.audit import accuracy, dp_advantage_bound, loss_threshold_mia
from cbp_jax.post.distill import (
    DistillConfig,
    DistillResult,
    corpus_from_file,
    distill,
    distill_loss,
    make_student,
    public_corpus,
)
from cbp_jax.post.dp import (
    DPConfig,
    DPResult,
    clip_per_example,
    dp_tune_prompt,
    noise_multiplier_for,
    per_example_grads,
    spent_epsilon,
)
from cbp_jax.post.lira import lira_audit, train_shadows
from cbp_jax.post.public_alpha import public_alpha
from cbp_jax.post.transfer import (
    PRIVATE_TASKS,
    PrivacyBoundaryError,
    PublicData,
    TransferConfig,
    alpha_heuristic,
    mark_private,
    transfer,
    transfer_loss,
)

__all__ = [
    "PRIVATE_TASKS",
    "DPConfig",
    "DPResult",
    "DistillConfig",
    "DistillResult",
    "PrivacyBoundaryError",
    "PublicData",
    "TransferConfig",
    "alpha_heuristic",
    "accuracy",
    "clip_per_example",
    "dp_advantage_bound",
    "lira_audit",
    "loss_threshold_mia",
    "corpus_from_file",
    "distill",
    "distill_loss",
    "dp_tune_prompt",
    "make_student",
    "mark_private",
    "noise_multiplier_for",
    "per_example_grads",
    "public_alpha",
    "public_corpus",
    "spent_epsilon",
    "transfer",
    "train_shadows",
    "transfer_loss",
]
