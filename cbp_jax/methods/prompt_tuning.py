"""White-box soft-prompt tuning with optax, gradients through the frozen model: the black-box
methods' upper bound. Cross-entropy over verbalizer class scores; the prompt starts from
embeddings of random vocabulary tokens; the best on the k-shot dev set is kept. One step of
the one training loop (`cbp_jax.loop.run_epochs`) is one epoch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.data.batching import Inputs
from cbp_jax.loop import optax_step, run_epochs
from cbp_jax.methods.losses import accuracy, class_scores, cross_entropy
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.decoder import forward


@dataclasses.dataclass(frozen=True)
class PromptTuningConfig:
    prompt_len: int = 50
    learning_rate: float = 3e-3
    epochs: int = 30
    batch_size: int = 8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    init_vocab: int = 5000  # initialise from embeddings of random ids below this
    seed: int = 0

    def __post_init__(self):
        if min(self.prompt_len, self.epochs, self.batch_size, self.init_vocab) <= 0:
            raise ValueError("prompt_len, epochs, batch_size and init_vocab must be positive")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")


def prompt_scores(params, cfg: LlamaConfig, prompt_TxD, tokens_BxS, mask_BxS, cands_CxW):
    """Class scores B x C for one shared prompt."""
    b = tokens_BxS.shape[0]
    prompt = jnp.broadcast_to(prompt_TxD, (b, *prompt_TxD.shape))
    logits = forward(params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt).logits
    logp = jax.nn.log_softmax(logits, axis=-1)
    c, w = cands_CxW.shape
    return class_scores(logp[:, cands_CxW.reshape(-1)].reshape(b, c, w))


def _loss(prompt, params, cfg, tokens, mask, cands, labels):
    return cross_entropy(prompt_scores(params, cfg, prompt, tokens, mask, cands), labels)


@functools.partial(jax.jit, static_argnames=("cfg", "opt"))
def _step(prompt, opt_state, params, cfg, opt, tokens, mask, cands, labels):
    step = optax_step(_loss, opt)
    return step(prompt, opt_state, params, cfg, tokens, mask, cands, labels)[:3]


@functools.partial(jax.jit, static_argnames="cfg")
def evaluate_prompt(params, cfg, prompt, tokens, mask, cands, labels):
    scores = prompt_scores(params, cfg, prompt, tokens, mask, cands)
    return cross_entropy(scores, labels), accuracy(scores, labels)


def tune_prompt(
    params,
    cfg: LlamaConfig,
    train: Inputs,
    dev: Inputs,
    pt: PromptTuningConfig,
    init_prompt_TxD=None,
    progress: bool = True,
):
    """Returns (best prompt T x D, best dev accuracy, history list)."""
    key_init, key_order = jax.random.split(jax.random.key(pt.seed))
    if init_prompt_TxD is None:
        ids = jax.random.randint(key_init, (pt.prompt_len,), 0, min(pt.init_vocab, cfg.vocab_size))
        init_prompt_TxD = params["embed"][ids].astype(jnp.float32)
    prompt = jnp.asarray(init_prompt_TxD, jnp.float32)
    opt = optax.chain(
        optax.clip_by_global_norm(pt.clip_norm),
        optax.adamw(pt.learning_rate, weight_decay=pt.weight_decay),
    )
    tr, dv = train.device(), dev.device()
    n = tr[0].shape[0]
    rng = np.random.default_rng(int(jax.random.randint(key_order, (), 0, 2**31 - 1)))

    def step(prompt, opt_state, idx):
        batch = [x[idx] for x in (tr[0], tr[1])] + [tr[2], tr[3][idx]]
        return _step(prompt, opt_state, params, cfg, opt, *batch)

    def batches():
        order = rng.permutation(n)
        return [order[start : start + pt.batch_size] for start in range(0, n, pt.batch_size)]

    best, best_acc, history = run_epochs(
        step, lambda p: evaluate_prompt(params, cfg, p, *dv), prompt, opt.init(prompt), batches,
        pt.epochs, names=("train_loss",), desc="prompt tuning", progress=progress,
    )  # fmt: skip
    return np.asarray(best), best_acc, history
