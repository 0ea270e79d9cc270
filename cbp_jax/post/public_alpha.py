"""POST's transfer weight alpha from public data only (no private accuracy outside the budget).

The published heuristic a = min((ZS - RG) / (C - RG), 1) (transfer.alpha_heuristic) needs the
teacher's zero-shot accuracy ZS and the student's accuracy with the prompt C on labelled data
of the private task; measuring them on the user's data would spend privacy outside the
accountant. Here the labels are the prompted student's own predictions on the provider's
PUBLIC inputs (rendered in the private task's template): C = 1 by construction and ZS becomes
the agreement of the teacher's zero-shot predictions with them,

    a = clip((agree - RG) / (1 - RG), 0, 1),     RG = 1 / number of classes,

a function of public data and of the (DP) prompt only, so post-processing under DP. A teacher
that already decides as the prompted student does gets weight on the prompt-effect term.
"""

from __future__ import annotations

import numpy as np

from cbp_jax.data.batching import Inputs
from cbp_jax.post.audit import class_scores_of
from cbp_jax.post.transfer import PublicData, alpha_heuristic


def public_predictions(params, cfg, public: PublicData, prompt_TxD=None) -> np.ndarray:
    """argmax class of every public input (in class_scores_of's bucket order)."""
    if not isinstance(public, PublicData):
        raise TypeError(f"public_predictions takes PublicData, got {type(public).__name__}")
    n = public.tokens_BxS.shape[0]
    unlabelled = Inputs(
        public.tokens_BxS, public.mask_BxS, public.candidates_CxW, np.zeros(n, np.int32)
    )
    scores, _ = class_scores_of(params, cfg, unlabelled, prompt_TxD)
    return np.asarray(scores).argmax(-1)


def public_alpha(teacher, t_cfg, student, s_cfg, student_prompt_TxD, public: PublicData) -> dict:
    """{'alpha', 'agreement'}: alpha from the teacher's zero-shot agreement on public inputs."""
    c = public.candidates_CxW.shape[0]
    if c < 2:
        raise ValueError(f"alpha needs >= 2 classes, got {c}")
    pseudo = public_predictions(student, s_cfg, public, student_prompt_TxD)
    zero_shot = public_predictions(teacher, t_cfg, public)
    agree = float((pseudo == zero_shot).mean())
    return {"alpha": alpha_heuristic(agree, 1.0, 1.0 / c), "agreement": agree}
