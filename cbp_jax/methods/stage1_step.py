"""CBP-Tuning stage 1, the step: class scores through the frozen LLM, loss, optimiser.

    min_{G, z0}  E_{task, (X, y)}  CE(softmax_c s_c(X), y),
    s_c(X) = logsumexp_{w in words(c)} log softmax_V(LLM([G(X, z0); Emb(X)]))[w]

(the class scores the user computes in stage 2 from the service's log-probs). Optimiser:
global-norm clipping, then AdamW (decay on kernels only), linear warmup and a cosine (to
10%) or constant schedule; z0 has its own rate (it lives on the N(0, I) scale).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from cbp_jax.loop import optax_step
from cbp_jax.methods.losses import accuracy, cross_entropy
from cbp_jax.methods.stage1_data import Stage1Config
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.decoder import forward, mean_pooled_embeddings
from cbp_jax.prompts.generator import generator_apply

NEG = -1e9  # score of a padded (absent) class


def task_vector(trainable, task_i):
    """The z of a step: the shared z0_R, or row task_i of the per-task z_TxR."""
    return trainable["z0_R"] if "z0_R" in trainable else trainable["z_TxR"][task_i]


def stage1_scores(
    trainable, A_DxR, model_params, cfg: LlamaConfig, tokens_BxS, mask_BxS, cands, reduce, task_i=0
):
    """Class scores B x C with the generator's prompt from the step's z (padded classes at
    NEG)."""
    ids_CxW, word_mask_CxW, class_mask_C = cands
    pooled_BxD = mean_pooled_embeddings(model_params, tokens_BxS, mask_BxS)
    z_R = task_vector(trainable, task_i)
    prompt_BxTxD = generator_apply(trainable["gen"], A_DxR, pooled_BxD, z_R)
    logits_BxV = forward(model_params, cfg, tokens_BxS, mask_BxS, prompt_BxTxD=prompt_BxTxD).logits
    logp_BxCxW = jax.nn.log_softmax(logits_BxV, axis=-1)[:, ids_CxW]
    if reduce == "logsumexp":
        scores = jax.nn.logsumexp(logp_BxCxW, axis=-1, where=word_mask_CxW)
    else:
        m = word_mask_CxW.astype(jnp.float32)
        scores = (logp_BxCxW * m).sum(-1) / jnp.maximum(m.sum(-1), 1.0)
    return jnp.where(class_mask_C, scores, NEG)


def make_schedule(cfg: Stage1Config, peak: float):
    """Linear warmup from 0 over `warmup` steps, then cosine to 10% or constant."""
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, cfg.steps - cfg.warmup, alpha=0.1)
    else:
        main = optax.constant_schedule(peak)
    if cfg.warmup == 0:
        return main
    warm = optax.linear_schedule(0.0, peak, cfg.warmup)
    return optax.join_schedules([warm, main], [cfg.warmup])


def make_optimizer(cfg: Stage1Config) -> optax.GradientTransformation:
    def decay_mask(tree):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: any(getattr(p, "key", None) == "kernel" for p in path), tree
        )

    gen = optax.adamw(
        make_schedule(cfg, cfg.learning_rate), weight_decay=cfg.weight_decay, mask=decay_mask
    )
    z0 = optax.adam(make_schedule(cfg, cfg.z0_learning_rate))
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.multi_transform(
            {"gen": gen, "z0": z0},
            {"gen": "gen", ("z_TxR" if cfg.task_vectors else "z0_R"): "z0"},
        ),
    )


@functools.lru_cache(maxsize=8)
def train_step_fn(model_cfg: LlamaConfig, cfg: Stage1Config):
    """Jitted train step, cached per config so repeated runs reuse the compiled code."""
    opt = make_optimizer(cfg)

    def loss_fn(trainable, A_DxR, model_params, tokens, mask, cands, labels, task_i):
        scores = stage1_scores(
            trainable, A_DxR, model_params, model_cfg, tokens, mask, cands, cfg.score_reduce, task_i
        )
        return cross_entropy(scores, labels), accuracy(scores, labels)

    @jax.jit
    def step(trainable, opt_state, A_DxR, model_params, tokens, mask, cands, labels, task_i):
        trainable, opt_state, (loss, acc), grads = optax_step(loss_fn, opt, has_aux=True)(
            trainable, opt_state, A_DxR, model_params, tokens, mask, cands, labels, task_i
        )
        return trainable, opt_state, {"loss": loss, "acc": acc, "grad_norm": optax.tree.norm(grads)}

    return opt, step
