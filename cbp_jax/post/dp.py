"""POST step 2, user side: soft-prompt tuning on the student with DP-SGD (Abadi et al. 2016).

The user's prompt p (T x D) is trained locally on the student with the cross-entropy over
class scores at the answer position; by default as the public code runs it
(scripts/train_prompt.py, train_DP_prompt.py; `DPConfig`; its ReduceLROnPlateau schedule is
not reproduced). With DP, each step Poisson-samples the batch (rate q), takes per-example
gradients (`vmap(grad)`), clips each to norm C, adds N(0, sigma^2 C^2 I) to their sum,
divides by q N and steps the optimiser.

The variable-size batch runs in padded, masked chunks of `physical_batch` rows (fixed
shapes). sigma is the smallest noise multiplier whose epsilon after round(epochs / q) steps is
at most the target (delta = 1/N by default), by bisection with `dp_accounting` (RDP or PLD).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.checks import one_of, positive, positive_ints
from cbp_jax.data.batching import Inputs
from cbp_jax.loop import LoopState, run_loop
from cbp_jax.methods.losses import accuracy, cross_entropy
from cbp_jax.post.audit import prompt_class_scores

ACCOUNTANTS = ("rdp", "pld")
INITS = ("text", "random")  # the code's task-text init; random vocabulary tokens
CLASS_SCORES = ("mean_logit", "logsumexp")  # the code's mean raw logit; logsumexp of log-probs


# ---------------------------------------------------------------------------- accounting


def _check_privacy_args(epsilon, delta, q, steps) -> None:
    if epsilon is not None and not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    if not 0 < q <= 1:
        raise ValueError(f"sampling rate q must be in (0, 1], got {q!r}")
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")


def spent_epsilon(sigma: float, q: float, steps: int, delta: float, accountant="rdp") -> float:
    """Epsilon of `steps` Poisson-subsampled (rate q) Gaussian steps with noise sigma."""
    _check_privacy_args(None, delta, q, steps)
    if not sigma > 0:
        raise ValueError(f"noise multiplier must be > 0, got {sigma!r}")
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), int(steps)
    )
    if accountant == "rdp":
        acc = dp_accounting.rdp.RdpAccountant()
    elif accountant == "pld":
        acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    else:
        raise ValueError(f"unknown accountant {accountant!r}; known: {ACCOUNTANTS}")
    absl = logging.getLogger("absl")  # fractional RDP orders that fail to converge are
    level = absl.level  # dropped with one warning each; keep the bisection quiet
    absl.setLevel(logging.ERROR)
    try:
        return float(acc.compose(event).get_epsilon(delta))
    finally:
        absl.setLevel(level)


def noise_multiplier_for(
    epsilon: float, delta: float, q: float, steps: int, accountant="rdp", rtol: float = 1e-3
) -> float:
    """Smallest sigma (to rtol) with spent_epsilon(sigma, q, steps, delta) <= epsilon."""
    _check_privacy_args(epsilon, delta, q, steps)
    lo, hi = 0.0, 1.0
    while spent_epsilon(hi, q, steps, delta, accountant) > epsilon:
        lo, hi = hi, 2 * hi
        if hi > 1e6:
            raise ValueError(f"no noise multiplier reaches epsilon {epsilon} (delta {delta})")
    while hi - lo > rtol * hi:
        mid = (lo + hi) / 2
        if spent_epsilon(mid, q, steps, delta, accountant) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi


# ---------------------------------------------------------------------------- the DP gradient


def clip_per_example(grads_BxTxD, clip_norm):
    """(clipped grads, norms before clipping): each row scaled to L2 norm <= clip_norm."""
    b = grads_BxTxD.shape[0]
    norms_B = jnp.linalg.norm(grads_BxTxD.reshape(b, -1), axis=-1)
    scale_B = jnp.minimum(1.0, clip_norm / jnp.maximum(norms_B, 1e-12))
    return grads_BxTxD * scale_B.reshape((b,) + (1,) * (grads_BxTxD.ndim - 1)), norms_B


def example_loss(prompt_TxD, params, cfg, tokens_S, mask_S, cands_CxW, label, weights_CxW=None):
    """Cross-entropy of one example (the unit DP-SGD clips); class scores as in `audit`:
    mean raw logit over the label words (weights C x W given), else logsumexp of log-probs."""
    scores = prompt_class_scores(
        params, cfg, prompt_TxD, tokens_S[None], mask_S[None], cands_CxW, weights_CxW
    )
    return cross_entropy(scores, label[None])


def per_example_grads(
    prompt_TxD, params, cfg, tokens_BxS, mask_BxS, cands_CxW, labels_B, weights_CxW=None
):
    """B x T x D gradients, one per example, with jax.vmap(jax.grad(.))."""
    grad_fn = jax.vmap(jax.grad(example_loss), in_axes=(None, None, None, 0, 0, None, 0, None))
    return grad_fn(prompt_TxD, params, cfg, tokens_BxS, mask_BxS, cands_CxW, labels_B, weights_CxW)


@functools.partial(jax.jit, static_argnames="cfg")
def clipped_grad_sum(
    prompt_TxD, params, cfg, tokens_BxS, mask_BxS, cands_CxW, labels_B, keep_B, clip_norm,
    weights_CxW=None,
):  # fmt: skip
    """Sum over kept rows of clipped per-example gradients (T x D), and their raw norms."""
    grads = per_example_grads(
        prompt_TxD, params, cfg, tokens_BxS, mask_BxS, cands_CxW, labels_B, weights_CxW
    )
    clipped, norms_B = clip_per_example(grads, clip_norm)
    return jnp.einsum("b,btd->td", keep_B.astype(clipped.dtype), clipped), norms_B


def noisy_gradient(key_noise, grad_sum_TxD, clip_norm, noise_multiplier, expected_batch):
    """(sum + N(0, (sigma C)^2 I)) / (q N)."""
    noise = jax.random.normal(key_noise, grad_sum_TxD.shape, grad_sum_TxD.dtype)
    return (grad_sum_TxD + noise_multiplier * clip_norm * noise) / expected_batch


def poisson_sample(seed: int, step: int, n: int, q: float) -> np.ndarray:
    """Indices of the examples in step `step`'s batch (each kept with probability q)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, step]))
    return np.flatnonzero(rng.random(n) < q)


# ---------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class DPConfig:
    """DP-SGD prompt tuning. epsilon None = no privacy (no clipping, no noise; the same
    Poisson batches). delta None = 1 / N. expected_batch_size: q N. physical_batch: rows per
    compiled chunk. optimizer: "auto" (the code's: Adam without DP, SGD with DP, where its
    Opacus path asserts SGD; lr 5e-4, 5 epochs), "adam" or "sgd". init: "text"
    (the code's task text; the caller passes the prompt) or "random" (ids below init_vocab).
    class_score: "mean_logit" (the code's; the caller passes the label-word weights) or
    "logsumexp"."""

    prompt_len: int = 100
    epochs: int = 5
    expected_batch_size: int = 16
    physical_batch: int = 16
    learning_rate: float = 5e-4
    optimizer: str = "auto"
    clip_norm: float = 1.0
    epsilon: float | None = 8.0
    delta: float | None = None
    accountant: str = "rdp"
    init_vocab: int = 5000
    seed: int = 0
    init: str = "text"
    class_score: str = "mean_logit"

    def __post_init__(self):
        positive_ints(
            self, "prompt_len", "epochs", "expected_batch_size", "physical_batch", "init_vocab"
        )
        positive(self, "learning_rate", "clip_norm")
        if self.epsilon is not None and not self.epsilon > 0:
            raise ValueError(f"DPConfig.epsilon must be > 0 (or None), got {self.epsilon!r}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ValueError(f"DPConfig.delta must be in (0, 1), got {self.delta!r}")
        one_of(self, "optimizer", ("auto", "sgd", "adam"))
        one_of(self, "accountant", ACCOUNTANTS)
        one_of(self, "init", INITS)
        one_of(self, "class_score", CLASS_SCORES)

    @property
    def resolved_optimizer(self) -> str:
        """The optimizer that runs: "auto" is Adam without DP and SGD with DP (the code)."""
        if self.optimizer != "auto":
            return self.optimizer
        return "adam" if self.epsilon is None else "sgd"


@dataclasses.dataclass
class DPResult:
    prompt_TxD: np.ndarray
    noise_multiplier: float  # 0 without DP
    epsilon: float | None  # spent, by the accountant
    delta: float | None
    steps: int
    history: list[dict]


def _start(params, cfg, dcfg: DPConfig, train: Inputs, init_prompt_TxD, weights_CxW):
    """(initial prompt T x D float32, label-word weights or None), checked against dcfg."""
    if dcfg.init == "text":
        if init_prompt_TxD is None:
            raise ValueError("init='text' needs init_prompt_TxD (code_prompts.text_init_prompt)")
        prompt = jnp.asarray(init_prompt_TxD, jnp.float32)
        if prompt.shape != (dcfg.prompt_len, cfg.hidden_size):
            raise ValueError(f"init prompt must be {dcfg.prompt_len} x {cfg.hidden_size}, "
                             f"got {prompt.shape}")  # fmt: skip
    else:
        key_init = jax.random.split(jax.random.key(dcfg.seed))[0]
        hi = min(dcfg.init_vocab, cfg.vocab_size)
        ids = jax.random.randint(key_init, (dcfg.prompt_len,), 0, hi)
        prompt = params["embed"][ids].astype(jnp.float32)
    if dcfg.class_score == "logsumexp":
        return prompt, None
    if weights_CxW is None or np.shape(weights_CxW) != train.candidates_CxW.shape:
        raise ValueError("class_score='mean_logit' needs weights_CxW shaped like the "
                         "candidates (code_prompts.code_candidates)")  # fmt: skip
    return prompt, jnp.asarray(weights_CxW, jnp.float32)


def dp_tune_prompt(
    params, cfg, train: Inputs, dev: Inputs | None, dcfg: DPConfig, progress: bool = True,
    *, init_prompt_TxD=None, weights_CxW=None,
) -> DPResult:  # fmt: skip
    """Tune a soft prompt on (params, cfg) with DP-SGD; returns the LAST prompt (picking the
    best on dev would spend privacy on the dev set). init_prompt_TxD / weights_CxW: the
    text-initialised prompt and label-word weights DPConfig.init / class_score ask for."""
    n = train.tokens_BxS.shape[0]
    q = min(1.0, dcfg.expected_batch_size / n)
    steps = max(1, round(dcfg.epochs / q))
    private = dcfg.epsilon is not None
    delta = (dcfg.delta or 1.0 / n) if private else None
    sigma = noise_multiplier_for(dcfg.epsilon, delta, q, steps, dcfg.accountant) if private else 0
    clip = dcfg.clip_norm if private else math.inf
    key_noise = jax.random.split(jax.random.key(dcfg.seed))[1]
    prompt, weights = _start(params, cfg, dcfg, train, init_prompt_TxD, weights_CxW)
    opt = (optax.sgd if dcfg.resolved_optimizer == "sgd" else optax.adam)(dcfg.learning_rate)
    update = jax.jit(lambda g, s, p: opt.update(g, s, p))
    (tokens, mask, cands, labels), pb = train.device(), dcfg.physical_batch

    def step(state):
        prompt, idx = state.tree["prompt"], poisson_sample(dcfg.seed, state.step, n, q)
        grad_sum = jnp.zeros_like(prompt)
        for start in range(0, max(len(idx), 1), pb):
            chunk = idx[start : start + pb]
            rows = jnp.asarray(np.pad(chunk, (0, pb - len(chunk))), jnp.int32)
            keep = jnp.arange(pb) < len(chunk)
            part, _ = clipped_grad_sum(
                prompt, params, cfg, tokens[rows], mask[rows], cands, labels[rows], keep, clip,
                weights,
            )  # fmt: skip
            grad_sum = grad_sum + part
        key = jax.random.fold_in(key_noise, state.step)
        grad = noisy_gradient(key, grad_sum, dcfg.clip_norm, sigma, q * n)
        updates, opt_state = update(grad, state.tree["opt_state"], prompt)
        tree = {"prompt": optax.apply_updates(prompt, updates), "opt_state": opt_state}
        row = {"step": state.step + 1, "batch": int(len(idx))}
        return state.replace(tree=tree, step=row["step"]), [row]

    state = LoopState({"prompt": prompt, "opt_state": opt.init(prompt)})
    state, history, _ = run_loop(step, state, steps, desc="DP prompt tuning", progress=progress)
    prompt = state.tree["prompt"]
    if dev is not None:
        d_tokens, d_mask, d_cands, d_labels = dev.device()
        scores = prompt_class_scores(params, cfg, prompt, d_tokens, d_mask, d_cands, weights)
        loss, acc = float(cross_entropy(scores, d_labels)), float(accuracy(scores, d_labels))
        history.append({"step": steps, "dev_loss": loss, "dev_acc": acc})
    spent = spent_epsilon(sigma, q, steps, delta, dcfg.accountant) if private else None
    return DPResult(np.asarray(prompt), float(sigma), spent, delta, steps, history)
