"""POST (Wang et al., ICML 2025): private transfer of soft prompts via a distilled student.

1. `distill`: the provider distils a few-layer student from the teacher on public text.
2. `dp_tune_prompt`: the user tunes a soft prompt on the student, optionally with DP-SGD
   (noise calibrated by `noise_multiplier_for`, spent budget from `spent_epsilon`);
   audited by `loss_threshold_mia` and offline LiRA (`lira_audit`, `train_shadows`).
3. `transfer`: the provider moves the prompt to the teacher using only `PublicData`, with
   the public code's loss (`mix_loss`: KL(S || T), tau = 2) and weight alpha (`transfer_alpha`:
   the paper's formula, the code's 0.5, or the public proxy `public_alpha`); the last and the
   best accuracy over steps (`best_and_last`).
"""

from cbp_jax.post.audit import (
    accuracy,
    dp_advantage_bound,
    lira_audit,
    loss_threshold_mia,
    train_shadows,
)
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
from cbp_jax.post.transfer_loss import best_and_last, mix_loss, paper_alpha, transfer_alpha

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
    "best_and_last",
    "mix_loss",
    "paper_alpha",
    "transfer_alpha",
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
