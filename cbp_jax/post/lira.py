"""Offline LiRA membership inference on a soft prompt (Carlini et al., S&P 2022).

The attacker audits a released prompt p on a model (the student, where prompts are cheap):
for each target example (x, y) it scores the logit-scaled confidence

    phi(p; x, y) = s_y - logsumexp_{c != y} s_c   (= log p_y - log(1 - p_y)),

s the class scores of `audit.class_scores_of`. K shadow prompts are trained, by the same
algorithm, on random subsets of a shadow pool that holds no target ("OUT" shadows, the
offline variant); a Gaussian N(mu_x, sd_x^2) fitted to the K shadow values of each target
gives the one-sided test score Phi((phi(p; x, y) - mu_x) / sd_x): high = member.

Reported: AUC over members vs non-members and the TPR at a fixed low FPR (1% by default:
the threshold is the smallest score that at most that fraction of non-members exceed), next
to the loss-threshold attack of audit.py. With n non-members an FPR of 1% is resolved only
when n >= 100; below that the TPR is at FPR 1/n's threshold (the highest non-member score).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from cbp_jax.data.batching import Inputs
from cbp_jax.post.audit import auc_lower_is_member, class_scores_of


def subset(data: Inputs, idx) -> Inputs:
    """The examples `idx` of a data set (candidates shared)."""
    idx = np.asarray(idx)
    return Inputs(data.tokens_BxS[idx], data.mask_BxS[idx], data.candidates_CxW, data.labels_B[idx])


def logit_confidence(params, cfg, data: Inputs, prompt_TxD) -> np.ndarray:
    """phi = s_y - logsumexp_{c != y} s_c per example, in class_scores_of's length-bucket
    order (the same for every prompt, so targets stay aligned across shadows)."""
    scores, labels = class_scores_of(params, cfg, data, prompt_TxD)
    scores = np.asarray(scores, np.float64)
    rows = np.arange(len(labels))
    others = scores.copy()
    others[rows, labels] = -np.inf
    return scores[rows, labels] - np.logaddexp.reduce(others, axis=-1)


def offline_scores(target_phi_N, shadow_phi_KxN, min_sd: float = 1e-3) -> np.ndarray:
    """log Phi((phi - mu) / sd) with (mu, sd) of the K OUT shadows per target."""
    shadow = np.asarray(shadow_phi_KxN, np.float64)
    if shadow.ndim != 2 or shadow.shape[0] < 2:
        raise ValueError(f"offline LiRA needs >= 2 shadow prompts, got shape {shadow.shape}")
    if shadow.shape[1] != np.asarray(target_phi_N).shape[0]:
        raise ValueError("shadow and target confidences disagree on the number of targets")
    mu, sd = shadow.mean(0), np.maximum(shadow.std(0, ddof=1), min_sd)
    return stats.norm.logcdf((np.asarray(target_phi_N) - mu) / sd)


def tpr_at_fpr(member_scores, nonmember_scores, fpr: float = 0.01) -> float:
    """TPR at the lowest threshold that at most a fraction `fpr` of non-members exceed."""
    if not 0 < fpr < 1:
        raise ValueError(f"fpr must be in (0, 1), got {fpr!r}")
    non = np.sort(np.asarray(nonmember_scores))[::-1]
    allowed = int(np.floor(fpr * len(non)))  # non-members allowed above the threshold
    threshold = non[allowed] if allowed < len(non) else -np.inf
    return float((np.asarray(member_scores) > threshold).mean())


def lira_audit(
    params,
    cfg,
    prompt_TxD,
    members: Inputs,
    nonmembers: Inputs,
    shadow_prompts: list,
    fpr: float = 0.01,
) -> dict:
    """{'auc', 'tpr_at_fpr', 'fpr', 'shadows'} of offline LiRA on the released prompt."""
    if not len(members.labels_B) or not len(nonmembers.labels_B):
        raise ValueError("LiRA needs members and non-members")
    scores = []
    for data in (members, nonmembers):
        phi = logit_confidence(params, cfg, data, prompt_TxD)
        shadow = [logit_confidence(params, cfg, data, p) for p in shadow_prompts]
        scores.append(offline_scores(phi, np.stack(shadow)))
    sm, sn = scores
    return {
        "auc": auc_lower_is_member(-sm, -sn),  # higher score = member
        "tpr_at_fpr": tpr_at_fpr(sm, sn, fpr),
        "fpr": fpr,
        "shadows": len(shadow_prompts),
    }


def train_shadows(
    pool: Inputs, n_shadows: int, size: int, train_fn: Callable[[Inputs, int], np.ndarray], seed=0
) -> list:
    """K prompts, shadow k trained by train_fn(subset, k) on `size` random pool examples."""
    n = len(pool.labels_B)
    if n_shadows < 2 or not 1 <= size <= n:
        raise ValueError(f"need >= 2 shadows of 1..{n} examples, got {n_shadows} x {size}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    return [train_fn(subset(pool, rng.permutation(n)[:size]), k) for k in range(n_shadows)]
