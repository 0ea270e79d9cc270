"""Evaluation and privacy audits of POST prompts: accuracy, loss-threshold membership
inference and offline LiRA.

Accuracy: argmax over class scores s_c = logsumexp_{w in words(c)} log p(w | [p; x]) at the
answer position (no prompt = zero-shot), in length-sorted batches; with label-word weights
(code_prompts.code_candidates) the public code's score instead, the mean raw logit over the
class's words.

Membership inference (Yeom et al. 2018, loss threshold): the attacker sees the per-example
loss l(x, y) = -log softmax_c(s)[y] under the released prompt and guesses "member" when
l < tau, with tau the mean loss on the training set. Reported: the attack's balanced accuracy
at that tau and the threshold-free AUC = P(l(member) < l(non-member)) (ties count 1/2),
over the prompt's training examples (members) and as many held-out examples (non-members).
AUC 0.5 means the prompt leaks nothing this attack sees; DP-SGD bounds the advantage by
(e^eps - 1 + 2 delta) / (e^eps + 1) (hypothesis-testing view of DP, Kairouz et al. 2015).

Offline LiRA (Carlini et al., S&P 2022), on a model where prompts are cheap (the student):
each target's logit-scaled confidence phi(p; x, y) = s_y - logsumexp_{c != y} s_c is compared
with a Gaussian N(mu_x, sd_x^2) fitted to K shadow prompts trained by the same algorithm on
random subsets of a shadow pool that holds no target ("OUT" shadows); the test score is
Phi((phi - mu_x) / sd_x), high = member. Reported: AUC and the TPR at a fixed low FPR (1%:
the threshold is the smallest score at most that fraction of non-members exceed; with n
non-members an FPR of 1% is resolved only when n >= 100, below that the TPR is at FPR 1/n's).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.losses import class_scores
from cbp_jax.model.decoder import forward


def word_scores(logits_BxV, cands_CxW, weights_CxW=None):
    """B x C class scores from answer-position logits: logsumexp of the label words' log-probs,
    or with weights C x W (code_prompts) the weighted (mean) raw logit over the class's words."""
    b, (c, w) = logits_BxV.shape[0], cands_CxW.shape
    if weights_CxW is not None:
        picked = logits_BxV[:, cands_CxW.reshape(-1)].reshape(b, c, w)
        return (picked * jnp.asarray(weights_CxW, picked.dtype)).sum(-1)
    logp = jax.nn.log_softmax(logits_BxV, axis=-1)
    return class_scores(logp[:, cands_CxW.reshape(-1)].reshape(b, c, w))


def prompted_logits(params, cfg, prompt_TxD, tokens_BxS, mask_BxS=None):
    """Answer-position logits with one soft prompt T x D shared by the batch (None: none)."""
    b = tokens_BxS.shape[0]
    prompt = None if prompt_TxD is None else jnp.broadcast_to(prompt_TxD, (b, *prompt_TxD.shape))
    return forward(params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt).logits


def prompt_class_scores(params, cfg, prompt_TxD, tokens_BxS, mask_BxS, cands_CxW, weights_CxW=None):
    """B x C `word_scores` of the model with a prompt (None: zero-shot)."""
    logits = prompted_logits(params, cfg, prompt_TxD, tokens_BxS, mask_BxS)
    return word_scores(logits, cands_CxW, weights_CxW)


_scores = jax.jit(prompt_class_scores, static_argnames="cfg")


def class_scores_of(params, cfg, data: Inputs, prompt_TxD=None, batch_size: int = 16,
                    weights_CxW=None):  # fmt: skip
    """B x C class scores of every example (bucketed by length to save padding)."""
    buckets, labels = data.buckets(max(1, -(-len(data.labels_B) // batch_size)))
    weights = None if weights_CxW is None else jnp.asarray(weights_CxW, jnp.float32)
    out = []
    for tokens, mask, cands in buckets:
        prompt = None if prompt_TxD is None else jnp.asarray(prompt_TxD, jnp.float32)
        out.append(np.asarray(_scores(params, cfg, prompt, tokens, mask, cands, weights)))
    return np.concatenate(out), np.asarray(labels)


def accuracy(params, cfg, data: Inputs, prompt_TxD=None, batch_size: int = 16,
             weights_CxW=None) -> float:  # fmt: skip
    scores, labels = class_scores_of(params, cfg, data, prompt_TxD, batch_size, weights_CxW)
    return float((scores.argmax(-1) == labels).mean())


def example_losses(params, cfg, data: Inputs, prompt_TxD=None, batch_size: int = 16):
    """Per-example cross-entropy over class scores (order: the buckets')."""
    scores, labels = class_scores_of(params, cfg, data, prompt_TxD, batch_size)
    logp = scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True)
    return -logp[np.arange(len(labels)), labels]


def auc_lower_is_member(member_losses, nonmember_losses) -> float:
    """P(member loss < non-member loss), ties 1/2 (Mann-Whitney U / (m n))."""
    m = np.asarray(member_losses)[:, None]
    n = np.asarray(nonmember_losses)[None, :]
    return float((m < n).mean() + 0.5 * (m == n).mean())


def loss_threshold_mia(params, cfg, prompt_TxD, members: Inputs, nonmembers: Inputs) -> dict:
    """Yeom et al. loss-threshold attack on a prompt: {'auc', 'attack_acc', 'threshold'}."""
    lm = example_losses(params, cfg, members, prompt_TxD)
    ln = example_losses(params, cfg, nonmembers, prompt_TxD)
    if not len(lm) or not len(ln):
        raise ValueError("membership inference needs members and non-members")
    tau = float(lm.mean())
    attack_acc = 0.5 * ((lm < tau).mean() + (ln >= tau).mean())
    return {"auc": auc_lower_is_member(lm, ln), "attack_acc": float(attack_acc), "threshold": tau}


def dp_advantage_bound(epsilon: float, delta: float) -> float:
    """Upper bound on the membership advantage (TPR - FPR) of any attack under (eps, delta)-DP."""
    if not epsilon > 0 or not 0 <= delta < 1:
        raise ValueError(f"need epsilon > 0 and delta in [0, 1), got {epsilon}, {delta}")
    return float((np.exp(epsilon) - 1 + 2 * delta) / (np.exp(epsilon) + 1))


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
