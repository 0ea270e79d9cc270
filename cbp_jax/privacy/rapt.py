"""RAPT: parameter-efficient tuning on d_chi-privatized text with plain-token reconstruction.

Li, Tan, Liu (arXiv 2305.06212 v3; docs/methods.md, RAPT). The user privatizes its text
locally, x' = M(x) (dchi.py), with m PUBLIC plain tokens k (inputs.py); the service
tunes PEFT parameters theta (prompt, prefix or LoRA, peft.py) through the frozen model with a
reconstruction head (also peft.py) on L = L_task + w_rec L_rec: L_task the cross-entropy
over verbalizer class scores at the answer position, L_rec the head's recovery of k from M(k)
(default placement "plain_after"; `ORACLE` is the labelled non-private upper bound). Only
(theta, head) train; the head is dropped at inference, where test inputs are privatized as
at training. All PEFT methods share one epoch step (Adam, global-norm clipping), run by the
one training loop (`cbp_jax.loop.run_epochs`; the best dev epoch is kept).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.checks import one_of, positive, positive_ints
from cbp_jax.data.batching import Inputs
from cbp_jax.loop import optax_step, run_epochs
from cbp_jax.methods.evaluate import prediction_summary
from cbp_jax.methods.losses import accuracy, cross_entropy
from cbp_jax.post.audit import word_scores
from cbp_jax.privacy.dchi import check_eta
from cbp_jax.privacy.inputs import (
    PLAIN_CHOICES,
    append_private_plain,
    fixed_plain_ids,
    plain_ids_for,
    plain_pool,
    privatized_inputs,
)
from cbp_jax.privacy.peft import (
    HEAD_VOCABS,
    ORACLE,
    PLACEMENTS,
    PeftConfig,
    head_targets,
    init_head,
    init_peft,
    peft_forward,
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
    placement: str = "plain_after"  # plain_after (RAPT) | plain_before | input (the ORACLE)
    num_plain_tokens: int = 8  # m, public, privatized with the text
    plain_tokens: str = "fixed"  # fixed: one sequence for all | random: fresh per example
    head_dim: int = 64  # c
    head_vocab: str = "full"  # fixed plain tokens only: "plain" = a head over their ids
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
        positive_ints(self, "prompt_len", "epochs", "batch_size", "head_dim", "init_vocab", "chunk")
        positive(self, "learning_rate", "clip_norm")
        if self.num_plain_tokens < 0 or self.rec_weight < 0:
            raise ValueError("RAPTConfig num_plain_tokens and rec_weight must be >= 0")
        one_of(self, "head_vocab", HEAD_VOCABS)
        one_of(self, "placement", PLACEMENTS)
        one_of(self, "plain_tokens", PLAIN_CHOICES)
        if self.use_reconstruction and self.placement != ORACLE:
            if self.num_plain_tokens == 0:
                raise ValueError(f"the {self.placement} reconstruction needs num_plain_tokens >= 1")
            if self.plain_tokens == "random" and self.head_vocab != "full":
                raise ValueError("random plain tokens need head_vocab='full'")
            if self.plain_tokens == "random" and self.placement == "plain_before":
                raise ValueError("plain_before takes the fixed plain tokens only")
        _ = self.peft_config  # validates peft, prompt_len, lora_rank, lora_alpha

    @property
    def peft_config(self) -> PeftConfig:
        return PeftConfig(
            self.peft, self.prompt_len, self.lora_rank, self.lora_alpha, self.init_vocab
        )


def plain_token_ids(rc: RAPTConfig, vocab_size: int, special_ids=()) -> np.ndarray:
    """The m fixed plain tokens: distinct non-special ids below init_vocab, from rc.seed."""
    pool = plain_pool(vocab_size, rc.init_vocab, special_ids)
    return fixed_plain_ids(rc.num_plain_tokens, rc.seed, pool)


def peft_class_scores(
    params, cfg, pc, peft, tokens, mask, cands, return_hidden=False, answer_index_B=None
):
    """(class scores B x C, final hidden states or None) of the adapted model."""
    out = peft_forward(
        params, cfg, pc, peft, tokens, mask, return_hidden=return_hidden,
        answer_index_B=answer_index_B,
    )  # fmt: skip
    return word_scores(out.logits, cands), out.hidden_BxSxD


def rapt_loss(train, params, cfg, pc, placement, use_rec, batch, rec_weight=1.0):
    """(L, (L_task, L_rec)); train = {"peft", "head"}; batch = (tokens, mask, cands, labels,
    original tokens, private mask, plain targets M or B x M). With "plain_after" the last m
    token columns are M(k) and the answer is read at the prompt's last token before them;
    the original tokens are read by the ORACLE placement only."""
    tokens, mask, cands, labels, orig, private, targets = batch
    answer = None
    if use_rec and placement == "plain_after":
        answer = jnp.full((tokens.shape[0],), tokens.shape[1] - targets.shape[-1] - 1)
    scores, hidden = peft_class_scores(
        params, cfg, pc, train["peft"], tokens, mask, cands, use_rec, answer
    )
    task = cross_entropy(scores, labels)
    rec = jnp.zeros(())
    if use_rec:
        rec = rec_loss(placement, train["head"], hidden, mask, orig, private, targets)
    return task + rec_weight * rec, (task, rec)


@functools.partial(jax.jit, static_argnames=("cfg", "opt", "pc", "placement", "use_rec"))
def train_step(train, opt_state, params, cfg, opt, pc, placement, use_rec, batch, rec_weight):
    """One optax step on (peft, head); returns (train, opt_state, (L_task, L_rec))."""
    step = optax_step(rapt_loss, opt, has_aux=True)
    train, opt_state, (_, parts), _ = step(
        train, opt_state, params, cfg, pc, placement, use_rec, batch, rec_weight
    )
    return train, opt_state, parts


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


def _private(key, params, tokenizer, task, examples, rc: RAPTConfig, *, train: bool = False):
    """(inputs, original tokens, private mask, plain targets B x M) of privatized examples.

    "plain_before": M(k) prepended (training and evaluation). "plain_after" with
    reconstruction, train=True: M(k) appended after the prompt (`append_private_plain`);
    evaluation needs none (the answer precedes them). The text's x' is the same either way.
    """
    special = tuple(tokenizer.all_special_ids)
    vocab = params["embed"].shape[0]
    before = rc.placement == "plain_before"
    plain = plain_token_ids(rc, vocab, special) if before else np.zeros(0, np.int32)
    inputs, orig, private = privatized_inputs(
        key, params["embed"], tokenizer, task, examples, rc.eta, plain, chunk=rc.chunk
    )
    n = len(examples)
    if before or not (train and rc.use_reconstruction and rc.placement == "plain_after"):
        targets, _ = head_targets(plain, rc.head_vocab, vocab)
        return inputs, orig, private, np.broadcast_to(targets, (n, len(plain))).copy()
    pool = plain_pool(vocab, rc.init_vocab, special)
    ids_BxM = plain_ids_for(rc.plain_tokens, key, n, rc.num_plain_tokens, rc.seed, pool)
    tokens, mask, _ = append_private_plain(
        key, params["embed"], inputs.tokens_BxS, inputs.mask_BxS, ids_BxM, rc.eta,
        protected_ids=special, chunk=rc.chunk,
    )  # fmt: skip
    inputs = Inputs(tokens, mask, inputs.candidates_CxW, inputs.labels_B)
    pad = np.zeros_like(ids_BxM)
    orig, private = np.concatenate([orig, pad], 1), np.concatenate([private, pad], 1)
    if rc.head_vocab == "plain":  # fixed plain tokens only (config check): every row alike
        ids_BxM = np.broadcast_to(head_targets(ids_BxM[0], "plain", vocab)[0], ids_BxM.shape)
    return inputs, orig, private, np.array(ids_BxM, np.int32)


def head_size(rc: RAPTConfig, vocab_size: int, special_ids=()) -> int:
    """The head's output size: the vocabulary, or the fixed plain tokens' distinct ids."""
    if rc.placement == ORACLE or rc.head_vocab == "full":
        return vocab_size
    return head_targets(plain_token_ids(rc, vocab_size, special_ids), "plain", vocab_size)[1]


def tune_rapt(params, cfg, tokenizer, task, train_examples, dev_examples, rc: RAPTConfig, key):
    """Privatize train/dev, tune (peft, head); returns (best peft params, dev acc, history)."""
    key_train, key_dev, key_peft, key_head, key_order = jax.random.split(key, 5)
    train_in, orig, private, targets = _private(
        key_train, params, tokenizer, task, train_examples, rc, train=True
    )
    dev_in, _, _, _ = _private(key_dev, params, tokenizer, task, dev_examples, rc)
    k = head_size(rc, cfg.vocab_size, tuple(tokenizer.all_special_ids))
    pc = rc.peft_config
    train = {
        "peft": init_peft(key_peft, params, cfg, pc),
        "head": init_head(key_head, cfg.hidden_size, rc.head_dim, k),
    }
    opt = optax.chain(optax.clip_by_global_norm(rc.clip_norm), optax.adam(rc.learning_rate))
    tr, dv = train_in.device(), dev_in.device()
    orig, private = jnp.asarray(orig, jnp.int32), jnp.asarray(private, jnp.int32)
    n, targets = tr[0].shape[0], jnp.asarray(targets, jnp.int32)
    rng = np.random.default_rng(int(jax.random.randint(key_order, (), 0, 2**31 - 1)))

    def step(train, opt_state, idx):
        batch = (tr[0][idx], tr[1][idx], tr[2], tr[3][idx], orig[idx], private[idx], targets[idx])
        return train_step(
            train, opt_state, params, cfg, opt, pc, rc.placement, rc.use_reconstruction, batch,
            rc.rec_weight,
        )  # fmt: skip

    best, best_acc, history = run_epochs(
        step, lambda t: evaluate_peft(params, cfg, pc, t["peft"], *dv), train, opt.init(train),
        lambda: np.array_split(rng.permutation(n), -(-n // rc.batch_size)), rc.epochs,
        names=("train_task_loss", "train_rec_loss"), kept=lambda t: t["peft"], progress=False,
    )  # fmt: skip
    return jax.tree.map(np.asarray, best), best_acc, history


def rapt_evaluate(params, cfg, tokenizer, task, examples, peft, rc, key, batch_size=32) -> dict:
    """`prediction_summary` (accuracy, balanced accuracy, predicted-class counts, confusion)
    on privatized inputs (plain tokens prepended with "plain_before"), head dropped.

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
