"""POST's transfer loss and weight as the public code runs them (sprintml/POST, utils/transfer.py).

`mix_transfer` there, with S = the student with the user's prompt (`source_peft_model`) and
T = the teacher with the prompt being trained (`target_peft_model`), logits at the answer
position and tau = 2:

    loss1 = KLDivLoss(log_softmax((T(p_t+x) - T(x)) / tau), softmax((S(p_s+x) - S(x)) / tau)) tau^2
    loss2 = KLDivLoss(log_softmax(T(p_t+x) / tau),          softmax(S(p_s+x) / tau))          tau^2
    loss  = alpha loss1 + (1 - alpha) loss2

torch's `nn.KLDivLoss(reduction="batchmean")(input, target)` with input = log q and target =
p is sum(p (log p - log q)) / B = mean over the batch of KL(p || q): p is the STUDENT's
distribution, so both terms are KL(S || T) (`kl_batchmean` spells this out; the test checks
it against a hand computation). This project's earlier runs used KL(T || S); that direction
stays as `KL_DIRECTIONS[1]` only so their records keep their meaning.

alpha: the code's argument (default 0.5, `CODE_ALPHA`), the paper's formula (`paper_alpha`)
or the public-agreement proxy (public_alpha.py, an ablation), by `transfer_alpha`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

KL_DIRECTIONS = ("student_teacher", "teacher_student")  # the code's KL(S||T); the earlier KL(T||S)
ALPHA_MODES = ("paper", "code", "public")  # the paper's formula, the code's 0.5, the proxy
CODE_ALPHA = 0.5
TAU = 2.0  # the code's temperature for KLDiv


def kl_batchmean(log_q_BxV, p_BxV):
    """torch.nn.KLDivLoss(reduction="batchmean")(input=log_q, target=p): the batch mean of
    KL(p || q) = sum_v p (log p - log q), with 0 log 0 = 0."""
    safe = jnp.where(p_BxV > 0, p_BxV, 1.0)
    return jnp.where(p_BxV > 0, p_BxV * (jnp.log(safe) - log_q_BxV), 0.0).sum() / p_BxV.shape[0]


def kl_term(teacher_BxV, student_BxV, tau: float, direction: str = KL_DIRECTIONS[0]):
    """tau^2 KL at temperature tau between teacher and student logits: KL(S || T) as the
    public code computes it (default), or the earlier KL(T || S)."""
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"KL direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    log_t = jax.nn.log_softmax(teacher_BxV / tau, axis=-1)
    log_s = jax.nn.log_softmax(student_BxV / tau, axis=-1)
    if direction == "student_teacher":
        return tau**2 * kl_batchmean(log_t, jnp.exp(log_s))
    return tau**2 * kl_batchmean(log_s, jnp.exp(log_t))


def mix_loss(t_p, t_0, s_p, s_0, alpha, tau: float = TAU, direction: str = KL_DIRECTIONS[0]):
    """alpha loss1 + (1 - alpha) loss2 of `mix_transfer`: loss1 on the prompts' effects
    (T(p_t+x) - T(x) against S(p_s+x) - S(x)), loss2 on the prompted outputs."""
    loss1 = kl_term(t_p - t_0, s_p - s_0, tau, direction)
    loss2 = kl_term(t_p, s_p, tau, direction)
    return alpha * loss1 + (1 - alpha) * loss2


def paper_alpha(zs: float, c: float, rg: float) -> float:
    """The paper's alpha = min((ZS - RG) / (C - RG), 1), clipped at 0 (a teacher below chance
    gets no weight on the effect term): ZS the teacher's zero-shot accuracy, C the compressed
    model's with the prompt, RG random guessing, on the private task's validation data."""
    for name, v in (("zs", zs), ("c", c), ("rg", rg)):
        if not 0 <= v <= 1:
            raise ValueError(f"{name} must be an accuracy in [0, 1], got {v!r}")
    if not c > rg:
        raise ValueError(f"compressed-model accuracy c ({c}) must exceed random guess rg ({rg})")
    return float(min(max((zs - rg) / (c - rg), 0.0), 1.0))


def transfer_alpha(mode: str, *, zs=None, c=None, rg=None, proxy=None) -> float:
    """alpha by `mode`: "paper" (paper_alpha of zs, c, rg), "code" (0.5), "public" (the
    public-agreement proxy's value, computed by public_alpha.py and passed in)."""
    if mode not in ALPHA_MODES:
        raise ValueError(f"alpha mode must be one of {ALPHA_MODES}, got {mode!r}")
    if mode == "code":
        return CODE_ALPHA
    if mode == "paper":
        if None in (zs, c, rg):
            raise ValueError("the paper's alpha needs zs, c and rg")
        return paper_alpha(zs, c, rg)
    if proxy is None or not 0 <= proxy <= 1:
        raise ValueError(f"the public alpha needs the proxy's value in [0, 1], got {proxy!r}")
    return float(proxy)


def best_and_last(history: list[dict]) -> dict:
    """{'last', 'best', 'best_step'} over the history entries that carry an 'acc' (the
    public code's best_acc / last_acc: evaluated every `interval` steps on the private task's
    validation set, so 'best' is selected on private validation data)."""
    evals = [h for h in history if "acc" in h]
    if not evals:
        raise ValueError("no evaluated steps in the transfer history")
    best = max(evals, key=lambda h: h["acc"])  # first of equals, as `acc > best_acc`
    return {"last": evals[-1]["acc"], "best": best["acc"], "best_step": best["step"]}
