"""RAPT: parameter-efficient tuning on d_chi-privatized text with token reconstruction.

Li, Tan, Liu (arXiv 2305.06212 v3). The user privatizes its text locally, x' = M(x) (see
dchi.py; with the "plain_before" ablation x' = M([k ; x]) for m fixed plain tokens k), and
tunes PEFT parameters theta (prompt tuning, prefix tuning or LoRA, peft.py) through the
frozen model on x', together with a reconstruction head (reconstruction.py):

    L = L_task + w_rec L_rec,

L_task the cross-entropy over verbalizer class scores (methods/losses.py) at the answer
position and L_rec the head's recovery of the original tokens. Only (theta, head) train; the
head is dropped at inference, and test inputs are privatized as at training. All three PEFT
methods share this one loop (Adam, global-norm clipping, best dev epoch kept).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.methods.evaluate import prediction_summary
from cbp_jax.methods.losses import accuracy, class_scores, cross_entropy
from cbp_jax.privacy.dchi import check_eta
from cbp_jax.privacy.inputs import privatized_inputs
from cbp_jax.privacy.peft import PeftConfig, init_peft, peft_forward
from cbp_jax.privacy.reconstruction import (
    HEAD_VOCABS,
    PLACEMENTS,
    head_targets,
    init_head,
    rec_loss,
)


@dataclasses.dataclass(frozen=True)
class RAPTConfig:
    eta: float = 100.0
    peft: str = "prompt"  # prompt | prefix | lora
    prompt_len: int = 10  # prompt / prefix length T
    lora_rank: int = 4
    lora_alpha: float = 8.0
    use_reconstruction: bool = True
    placement: str = "input"  # input | plain_before (the earlier, ablation)
    num_plain_tokens: int = 0  # m, prepended and privatized with the text
    head_dim: int = 64  # c
    head_vocab: str = "full"  # plain_before only: "plain" = an m-way head
    rec_weight: float = 1.0
    learning_rate: float = 3e-3
    epochs: int = 30
    batch_size: int = 8
    clip_norm: float = 1.0
    init_vocab: int = 5000  # prompt, prefix and plain tokens come from ids below this
    chunk: int = 4096  # vocabulary rows per nearest-neighbour step
    seed: int = 0

    def __post_init__(self):
        check_eta(self.eta)
        if min(self.prompt_len, self.epochs, self.batch_size, self.head_dim) <= 0:
            raise ValueError("prompt_len, epochs, batch_size and head_dim must be positive")
        if min(self.init_vocab, self.chunk) <= 0 or self.num_plain_tokens < 0:
            raise ValueError("init_vocab, chunk must be positive; num_plain_tokens >= 0")
        if self.learning_rate <= 0 or self.clip_norm <= 0 or self.rec_weight < 0:
            raise ValueError("learning_rate and clip_norm must be positive, rec_weight >= 0")
        if self.head_vocab not in HEAD_VOCABS:
            raise ValueError(f"head_vocab must be one of {HEAD_VOCABS}, got {self.head_vocab!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.use_reconstruction and self.placement == "plain_before":
            if self.num_plain_tokens == 0:
                raise ValueError("the plain_before reconstruction needs num_plain_tokens >= 1")
        _ = self.peft_config  # validates peft, prompt_len, lora_rank, lora_alpha

    @property
    def peft_config(self) -> PeftConfig:
        return PeftConfig(
            self.peft, self.prompt_len, self.lora_rank, self.lora_alpha, self.init_vocab
        )


def plain_token_ids(rc: RAPTConfig, vocab_size: int, special_ids=()) -> np.ndarray:
    """The m fixed plain tokens: distinct non-special ids below init_vocab, from rc.seed."""
    pool = np.setdiff1d(np.arange(min(rc.init_vocab, vocab_size)), np.asarray(special_ids))
    if len(pool) < rc.num_plain_tokens:
        raise ValueError(f"only {len(pool)} ids to draw {rc.num_plain_tokens} plain tokens")
    rng = np.random.default_rng(np.random.SeedSequence([rc.seed, 7]))
    return rng.choice(pool, rc.num_plain_tokens, replace=False).astype(np.int32)


def peft_class_scores(params, cfg, pc, peft, tokens, mask, cands, return_hidden=False):
    """(class scores B x C, final hidden states or None) of the adapted model."""
    out = peft_forward(params, cfg, pc, peft, tokens, mask, return_hidden=return_hidden)
    logp = jax.nn.log_softmax(out.logits, axis=-1)
    b, (c, w) = tokens.shape[0], cands.shape
    return class_scores(logp[:, cands.reshape(-1)].reshape(b, c, w)), out.hidden_BxSxD


def rapt_loss(train, params, cfg, pc, placement, use_rec, batch, rec_weight=1.0):
    """(L, (L_task, L_rec)); train = {"peft", "head"}; batch = (tokens, mask, cands, labels,
    original tokens, private mask, plain targets_M)."""
    tokens, mask, cands, labels, orig, private, targets_M = batch
    scores, hidden = peft_class_scores(params, cfg, pc, train["peft"], tokens, mask, cands, use_rec)
    task = cross_entropy(scores, labels)
    rec = jnp.zeros(())
    if use_rec:
        rec = rec_loss(placement, train["head"], hidden, mask, orig, private, targets_M)
    return task + rec_weight * rec, (task, rec)


@functools.partial(jax.jit, static_argnames=("cfg", "opt", "pc", "placement", "use_rec"))
def train_step(train, opt_state, params, cfg, opt, pc, placement, use_rec, batch, rec_weight):
    """One optax step on (peft, head); returns (train, opt_state, (L_task, L_rec))."""
    grad_fn = jax.value_and_grad(rapt_loss, has_aux=True)
    (_, parts), grad = grad_fn(train, params, cfg, pc, placement, use_rec, batch, rec_weight)
    updates, opt_state = opt.update(grad, opt_state, train)
    return optax.apply_updates(train, updates), opt_state, parts


@functools.partial(jax.jit, static_argnames=("cfg", "pc"))
def evaluate_peft(params, cfg, pc, peft, tokens, mask, cands, labels):
    """(mean task loss, accuracy) of the adapted model on a batch."""
    scores, _ = peft_class_scores(params, cfg, pc, peft, tokens, mask, cands)
    return cross_entropy(scores, labels), accuracy(scores, labels)


@functools.partial(jax.jit, static_argnames=("cfg", "pc"))
def predict_peft(params, cfg, pc, peft, tokens, mask, cands):
    """The adapted model's predicted class per example (B,)."""
    scores, _ = peft_class_scores(params, cfg, pc, peft, tokens, mask, cands)
    return jnp.argmax(scores, axis=-1)


def _private(key, params, tokenizer, task, examples, rc: RAPTConfig):
    special = tuple(tokenizer.all_special_ids)
    plain = plain_token_ids(rc, params["embed"].shape[0], special)
    inputs, orig, private = privatized_inputs(
        key, params["embed"], tokenizer, task, examples, rc.eta, plain, chunk=rc.chunk
    )
    return inputs, orig, private, plain


def tune_rapt(params, cfg, tokenizer, task, train_examples, dev_examples, rc: RAPTConfig, key):
    """Privatize train/dev, tune (peft, head); returns (best peft params, dev acc, history)."""
    key_train, key_dev, key_peft, key_head, key_order = jax.random.split(key, 5)
    train_in, orig, private, plain = _private(
        key_train, params, tokenizer, task, train_examples, rc
    )
    dev_in, _, _, _ = _private(key_dev, params, tokenizer, task, dev_examples, rc)
    targets_M, k = head_targets(plain, rc.head_vocab, cfg.vocab_size)
    if rc.placement == "input":
        k = cfg.vocab_size
    pc = rc.peft_config
    train = {
        "peft": init_peft(key_peft, params, cfg, pc),
        "head": init_head(key_head, cfg.hidden_size, rc.head_dim, k),
    }
    opt = optax.chain(optax.clip_by_global_norm(rc.clip_norm), optax.adam(rc.learning_rate))
    opt_state = opt.init(train)
    tr, dv = train_in.device(), dev_in.device()
    orig, private = jnp.asarray(orig, jnp.int32), jnp.asarray(private, jnp.int32)
    n, targets_M = tr[0].shape[0], jnp.asarray(targets_M)
    rng = np.random.default_rng(int(jax.random.randint(key_order, (), 0, 2**31 - 1)))
    best, history = (-1.0, float("inf"), train["peft"]), []
    for epoch in range(rc.epochs):
        parts = []
        for idx in np.array_split(rng.permutation(n), -(-n // rc.batch_size)):
            idx = jnp.asarray(idx)
            batch = (tr[0][idx], tr[1][idx], tr[2], tr[3][idx], orig[idx], private[idx])
            train, opt_state, p = train_step(
                train, opt_state, params, cfg, opt, pc, rc.placement,
                rc.use_reconstruction, (*batch, targets_M), rc.rec_weight,
            )  # fmt: skip
            parts.append([float(x) for x in p])
        dev_loss, dev_acc = (float(x) for x in evaluate_peft(params, cfg, pc, train["peft"], *dv))
        task_loss, rec = np.mean(parts, axis=0)
        history.append(
            dict(epoch=epoch + 1, train_task_loss=float(task_loss), train_rec_loss=float(rec))
            | dict(dev_loss=dev_loss, dev_acc=dev_acc)
        )
        if (dev_acc, -dev_loss) > (best[0], -best[1]):
            best = (dev_acc, dev_loss, train["peft"])
    return jax.tree.map(np.asarray, best[2]), best[0], history


def rapt_evaluate(params, cfg, tokenizer, task, examples, peft, rc, key, batch_size=32) -> dict:
    """`prediction_summary` (accuracy, balanced accuracy, predicted-class counts, confusion)
    on privatized inputs (plain tokens prepended if any), head dropped.

    `peft` is the dict `tune_rapt` returns, or (prompt tuning) a bare T x D prompt.
    """
    if not isinstance(peft, dict):
        peft = {"prompt_TxD": peft}
    peft = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), peft)
    inputs, _, _, _ = _private(key, params, tokenizer, task, examples, rc)
    tokens, mask, cands, labels = inputs.device()
    preds = []
    for s in range(0, tokens.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        pred = predict_peft(params, cfg, rc.peft_config, peft, tokens[sl], mask[sl], cands)
        preds.append(np.asarray(pred))
    return prediction_summary(np.concatenate(preds), np.asarray(labels), task.num_classes)


def rapt_accuracy(params, cfg, tokenizer, task, examples, peft, rc, key, batch_size=32):
    """Test accuracy of `rapt_evaluate`."""
    return rapt_evaluate(params, cfg, tokenizer, task, examples, peft, rc, key, batch_size)[
        "accuracy"
    ]
