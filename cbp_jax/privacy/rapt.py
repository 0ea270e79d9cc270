"""RAPT: prompt tuning on d_chi-privatized text with plain-token reconstruction.

Li, Tan, Liu (arXiv 2305.06212). The user sends x' = M([k ; x]) where k = (k_1..k_m) are
fixed public "plain tokens" and M is the d_chi privatizer (see dchi.py). The provider
tunes a soft prompt p on x' and, to keep the representations informative, a
reconstruction head that recovers each plain token from the final hidden state h_i at
its position:

    P(k_i | x') = softmax(W1 W2 h_i),   W2: R^D -> R^c,   W1: R^c -> R^{|T|},
    L_rec = -1/m sum_i log P(k_i | x'),    L = L_task + L_rec,

where T is the head's vocabulary ("plain": the distinct plain tokens; "full": all V
ids) and L_task the cross-entropy over verbalizer class scores (methods/losses.py). The
model is frozen; only (p, W1, W2) train. The head is dropped at inference, and test
inputs are privatized (with the plain tokens prepended) as at training.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.methods.losses import class_scores, cross_entropy
from cbp_jax.methods.prompt_tuning import evaluate_prompt
from cbp_jax.model.llama import forward
from cbp_jax.privacy.dchi import check_eta
from cbp_jax.privacy.inputs import privatized_inputs

HEAD_VOCABS = ("plain", "full")


@dataclasses.dataclass(frozen=True)
class RAPTConfig:
    eta: float = 100.0
    num_plain_tokens: int = 8  # m; 0 = plain privatized prompt tuning (no reconstruction)
    head_dim: int = 64  # c
    head_vocab: str = "plain"
    use_reconstruction: bool = True
    prompt_len: int = 10
    learning_rate: float = 3e-3
    epochs: int = 30
    batch_size: int = 8
    clip_norm: float = 1.0
    init_vocab: int = 5000  # prompt and plain tokens come from ids below this
    chunk: int = 4096  # vocabulary rows per nearest-neighbour step
    seed: int = 0

    def __post_init__(self):
        check_eta(self.eta)
        if min(self.prompt_len, self.epochs, self.batch_size, self.head_dim) <= 0:
            raise ValueError("prompt_len, epochs, batch_size and head_dim must be positive")
        if min(self.init_vocab, self.chunk) <= 0 or self.num_plain_tokens < 0:
            raise ValueError("init_vocab, chunk must be positive; num_plain_tokens >= 0")
        if self.learning_rate <= 0 or self.clip_norm <= 0:
            raise ValueError("learning_rate and clip_norm must be positive")
        if self.head_vocab not in HEAD_VOCABS:
            raise ValueError(f"head_vocab must be one of {HEAD_VOCABS}, got {self.head_vocab!r}")
        if self.use_reconstruction and self.num_plain_tokens == 0:
            raise ValueError("use_reconstruction needs num_plain_tokens >= 1")


def plain_token_ids(rc: RAPTConfig, vocab_size: int, special_ids=()) -> np.ndarray:
    """The m fixed plain tokens: distinct non-special ids below init_vocab, from rc.seed."""
    pool = np.setdiff1d(np.arange(min(rc.init_vocab, vocab_size)), np.asarray(special_ids))
    if len(pool) < rc.num_plain_tokens:
        raise ValueError(f"only {len(pool)} ids to draw {rc.num_plain_tokens} plain tokens")
    rng = np.random.default_rng(np.random.SeedSequence([rc.seed, 7]))
    return rng.choice(pool, rc.num_plain_tokens, replace=False).astype(np.int32)


def head_targets(plain_ids_M, head_vocab: str, vocab_size: int):
    """(targets_M, K): each plain token's index in the head's vocabulary of size K."""
    if head_vocab == "full":
        return np.asarray(plain_ids_M, np.int32), vocab_size
    uniq, targets = np.unique(np.asarray(plain_ids_M), return_inverse=True)
    return targets.astype(np.int32), len(uniq)


def init_head(key, hidden_size: int, head_dim: int, head_vocab_size: int) -> dict:
    """W2: D x c and W1: c x K, scaled normal (variance 1/fan-in)."""
    k2, k1 = jax.random.split(key)
    return {
        "w2_DxC": jax.random.normal(k2, (hidden_size, head_dim)) / np.sqrt(hidden_size),
        "w1_CxK": jax.random.normal(k1, (head_dim, head_vocab_size)) / np.sqrt(head_dim),
    }


def reconstruction_loss(head: dict, hidden_BxMxD, plain_ids_M):
    """L_rec = mean over batch and i of -log softmax(W1 W2 h_i)[k_i] (head-vocab indices)."""
    logits_BxMxK = (hidden_BxMxD @ head["w2_DxC"]) @ head["w1_CxK"]
    logp = jax.nn.log_softmax(logits_BxMxK, axis=-1)
    picked = jnp.take_along_axis(logp, jnp.broadcast_to(plain_ids_M, logp.shape[:2])[..., None], -1)
    return -picked.mean()


def plain_hidden(hidden_BxSxD, mask_BxS, m: int):
    """Hidden states at the m plain-token positions (the first real tokens of each row)."""
    first_B = mask_BxS.shape[1] - mask_BxS.sum(axis=1)  # left padding
    idx_BxM = first_B[:, None] + jnp.arange(m)
    return jnp.take_along_axis(hidden_BxSxD, idx_BxM[..., None], axis=1)


def rapt_loss(train, params, cfg, tokens, mask, cands, labels, targets_M, use_rec: bool):
    """(L, (L_task, L_rec)) for trainables {"prompt": T x D, "head": {...}}."""
    b = tokens.shape[0]
    prompt = jnp.broadcast_to(train["prompt"], (b, *train["prompt"].shape))
    out = forward(params, cfg, tokens, mask, prompt_BxTxD=prompt, return_hidden=use_rec)
    logp = jax.nn.log_softmax(out.logits, axis=-1)
    c, w = cands.shape
    task = cross_entropy(class_scores(logp[:, cands.reshape(-1)].reshape(b, c, w)), labels)
    rec = jnp.zeros(())
    if use_rec:
        h = plain_hidden(out.hidden_BxSxD, mask, targets_M.shape[0])
        rec = reconstruction_loss(train["head"], h, targets_M)
    return task + rec, (task, rec)


@functools.partial(jax.jit, static_argnames=("cfg", "opt", "use_rec"))
def train_step(train, opt_state, params, cfg, opt, tokens, mask, cands, labels, targets_M, use_rec):
    """One optax step on (prompt, head); returns (train, opt_state, (L_task, L_rec))."""
    grad_fn = jax.value_and_grad(rapt_loss, has_aux=True)
    (_, parts), grad = grad_fn(train, params, cfg, tokens, mask, cands, labels, targets_M, use_rec)
    updates, opt_state = opt.update(grad, opt_state, train)
    return optax.apply_updates(train, updates), opt_state, parts


def make_optimizer(rc: RAPTConfig):
    return optax.chain(optax.clip_by_global_norm(rc.clip_norm), optax.adam(rc.learning_rate))


def _private(key, params, tokenizer, task, examples, rc: RAPTConfig):
    special = tuple(tokenizer.all_special_ids)
    plain = plain_token_ids(rc, params["embed"].shape[0], special)
    inputs, _, _ = privatized_inputs(
        key, params["embed"], tokenizer, task, examples, rc.eta, plain, chunk=rc.chunk
    )
    return inputs, plain


def tune_rapt(params, cfg, tokenizer, task, train_examples, dev_examples, rc: RAPTConfig, key):
    """Privatize train/dev, tune (prompt, head); returns (best prompt T x D, dev acc, history)."""
    key_train, key_dev, key_prompt, key_head, key_order = jax.random.split(key, 5)
    train_in, plain = _private(key_train, params, tokenizer, task, train_examples, rc)
    dev_in, _ = _private(key_dev, params, tokenizer, task, dev_examples, rc)
    targets_M, k = head_targets(plain, rc.head_vocab, cfg.vocab_size)
    ids = jax.random.randint(key_prompt, (rc.prompt_len,), 0, min(rc.init_vocab, cfg.vocab_size))
    train = {
        "prompt": params["embed"][ids].astype(jnp.float32),
        "head": init_head(key_head, cfg.hidden_size, rc.head_dim, k),
    }
    opt = make_optimizer(rc)
    opt_state = opt.init(train)
    tr, dv = train_in.device(), dev_in.device()
    n = tr[0].shape[0]
    targets_M = jnp.asarray(targets_M)
    rng = np.random.default_rng(int(jax.random.randint(key_order, (), 0, 2**31 - 1)))
    best, history = (-1.0, float("inf"), train["prompt"]), []
    for epoch in range(rc.epochs):
        parts = []
        order = rng.permutation(n)
        for idx in np.array_split(order, -(-n // rc.batch_size)):  # <= 2 batch shapes
            idx = jnp.asarray(idx)
            batch = (tr[0][idx], tr[1][idx], tr[2], tr[3][idx], targets_M)
            train, opt_state, p = train_step(
                train, opt_state, params, cfg, opt, *batch, rc.use_reconstruction
            )
            parts.append([float(x) for x in p])
        dev_loss, dev_acc = (float(x) for x in evaluate_prompt(params, cfg, train["prompt"], *dv))
        task_loss, rec_loss = np.mean(parts, axis=0)
        history.append(
            {
                "epoch": epoch + 1,
                "train_task_loss": float(task_loss),
                "train_rec_loss": float(rec_loss),
                "dev_loss": dev_loss,
                "dev_acc": dev_acc,
            }
        )
        if (dev_acc, -dev_loss) > (best[0], -best[1]):
            best = (dev_acc, dev_loss, train["prompt"])
    return np.asarray(best[2]), best[0], history


def rapt_accuracy(params, cfg, tokenizer, task, examples, prompt_TxD, rc, key, batch_size=32):
    """Test accuracy on privatized inputs (plain tokens prepended), head dropped."""
    inputs, _ = _private(key, params, tokenizer, task, examples, rc)
    tokens, mask, cands, labels = inputs.device()
    prompt = jnp.asarray(prompt_TxD, jnp.float32)
    correct = 0.0
    for s in range(0, tokens.shape[0], batch_size):
        sl = slice(s, s + batch_size)
        _, acc = evaluate_prompt(params, cfg, prompt, tokens[sl], mask[sl], cands, labels[sl])
        correct += float(acc) * labels[sl].shape[0]
    return correct / tokens.shape[0]
