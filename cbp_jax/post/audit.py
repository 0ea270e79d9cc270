"""Evaluation and a privacy audit of POST prompts: accuracy and loss-threshold membership inference.

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
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.data.batching import Inputs
from cbp_jax.methods.losses import class_scores
from cbp_jax.model.decoder import forward


@functools.partial(jax.jit, static_argnames="cfg")
def _scores(params, cfg, prompt_TxD, tokens_BxS, mask_BxS, cands_CxW, weights_CxW=None):
    b = tokens_BxS.shape[0]
    prompt = None if prompt_TxD is None else jnp.broadcast_to(prompt_TxD, (b, *prompt_TxD.shape))
    logits = forward(params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt).logits
    c, w = cands_CxW.shape
    if weights_CxW is not None:  # the public code: mean raw logit over the class's words
        return (logits[:, cands_CxW.reshape(-1)].reshape(b, c, w) * weights_CxW).sum(-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return class_scores(logp[:, cands_CxW.reshape(-1)].reshape(b, c, w))


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
