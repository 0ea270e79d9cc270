"""POST step 1, provider side: distil a few-layer student from the teacher (docs/methods.md, POST).

The student is the teacher's chosen decoder blocks (default: the first and the last) with its
embeddings, final norm and LM head, trained on public token windows x_1..x_S to match the
teacher (Wang et al., ICML 2025, after DistilBERT):

    L = w_kl * tau^2 * mean_i KL( softmax(z^T_i / tau) || softmax(z^S_i / tau) )
      + w_lm * mean_i -log softmax(z^S_i)[x_{i+1}]
      + w_cos * mean_i (1 - cos(h^S_i, h^T_i)),

z the next-token logits and h the final normalised hidden states at every position i, tau = 2
and (w_kl, w_lm, w_cos) = (5, 2, 1). The teacher is frozen. The student's blocks and final norm
train; its token embeddings (the tied LM head) stay the teacher's by default
(`freeze_embeddings`), so a soft prompt lives in one embedding space for both models and the
student ships as its non-embedding weights only (shipped_student.py). The public code trains
every parameter (`freeze_embeddings=False`).

Data: `seq_len`-token windows of public text, shipped tasks never private here
(`public_corpus`) or a text file (`corpus_from_file`). A step's batch is a pure function of
(seed, step) (`transfer.batch_indices`), so a resumed run sees the batches the killed one
would have; the one training loop (`cbp_jax.loop`) checkpoints (student params, optimiser
state, step) every `checkpoint_every` steps and at the end, one JSONL line per step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.checks import positive, positive_ints
from cbp_jax.loop import LoopState, optax_step, run_loop
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.decoder import forward
from cbp_jax.post.transfer import PRIVATE_TASKS, batch_indices

DEFAULT_PUBLIC = ("ag_news",)


def default_layers(num_layers: int) -> tuple[int, ...]:
    """The first and the last block (one block if the teacher has one)."""
    return (0,) if num_layers == 1 else (0, num_layers - 1)


TRAINED_WITH_FROZEN_EMBEDDINGS = ("layers", "final_norm")


def make_student(params, cfg: LlamaConfig, layers: Sequence[int] | None = None):
    """(student params, student config): the teacher's chosen blocks, embeddings and head."""
    layers = default_layers(cfg.num_layers) if layers is None else tuple(layers)
    if not layers or list(layers) != sorted(set(layers)):
        raise ValueError(f"student layers must be strictly increasing, got {layers}")
    if layers[0] < 0 or layers[-1] >= cfg.num_layers:
        raise ValueError(f"student layers {layers} out of range [0, {cfg.num_layers})")
    idx = jnp.asarray(layers)
    student = {k: v for k, v in params.items() if k != "layers"}
    student["layers"] = jax.tree.map(lambda w: w[idx], params["layers"])
    return student, cfg.replace(num_layers=len(layers))


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """layers: teacher blocks kept (None: first + last); steps / batch_size: optimiser steps
    and windows per step; seq_len: tokens per window; temperature: tau of the KL term;
    weights: (w_kl, w_lm, w_cos); clip_norm: global-norm clip before AdamW; freeze_embeddings:
    train only the blocks and the final norm (the embeddings stay the teacher's)."""

    layers: tuple[int, ...] | None = None
    steps: int = 2000
    batch_size: int = 8
    seq_len: int = 128
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    temperature: float = 2.0
    weights: tuple[float, float, float] = (5.0, 2.0, 1.0)
    checkpoint_every: int = 100
    seed: int = 0
    freeze_embeddings: bool = True

    def __post_init__(self):
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        positive_ints(self, "steps", "batch_size", "seq_len", "checkpoint_every")
        if self.seq_len < 2:
            raise ValueError("DistillConfig.seq_len must be >= 2 (next-token targets)")
        positive(self, "learning_rate", "clip_norm", "temperature")
        if self.weight_decay < 0:
            raise ValueError("DistillConfig.weight_decay must be >= 0")
        if len(self.weights) != 3 or min(self.weights) < 0 or sum(self.weights) == 0:
            raise ValueError(f"DistillConfig.weights must be 3 non-negative, got {self.weights}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"DistillConfig.seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.freeze_embeddings, bool):
            raise ValueError("DistillConfig.freeze_embeddings must be a bool")


# ---------------------------------------------------------------------------- corpus


def pack(seqs: Sequence[Sequence[int]], seq_len: int, eos_id: int) -> np.ndarray:
    """Concatenate token lists (EOS after each) and cut into N x seq_len windows."""
    stream = [t for s in seqs for t in (*s, eos_id)]
    n = len(stream) // seq_len
    if n == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one window ({seq_len})")
    return np.asarray(stream[: n * seq_len], np.int32).reshape(n, seq_len)


def _windows(tokenizer, texts: Sequence[str], seq_len: int) -> np.ndarray:
    """`pack` of the texts' token ids, EOS (else the pad id) between them."""
    eos = getattr(tokenizer, "eos_token_id", None)
    eos = int(eos if eos is not None else tokenizer.pad_token_id or 0)
    return pack([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], seq_len, eos)


def public_corpus(tokenizer, names: Sequence[str] = DEFAULT_PUBLIC, seq_len: int = 128):
    """N x seq_len token windows of the rendered TRAIN-pool text of public shipped tasks.

    Refuses the private tasks (sst2, financial_phrasebank): the student is a public artefact.
    """
    from cbp_jax.data.splits import train_pool
    from cbp_jax.data.tasks import get_task

    names = (names,) if isinstance(names, str) else tuple(names)
    private = [n for n in names if n in PRIVATE_TASKS]
    if not names or private:
        raise ValueError(f"public corpus needs public task names; private: {private}")
    texts = [get_task(n).render(ex) for n in names for ex in train_pool(n)]
    return _windows(tokenizer, texts, seq_len)


def corpus_from_file(path, tokenizer, seq_len: int = 128) -> np.ndarray:
    """N x seq_len windows of a UTF-8 text file (one document per non-empty line)."""
    lines = [x.strip() for x in pathlib.Path(path).read_text("utf-8").splitlines()]
    if not any(lines):
        raise ValueError(f"{path}: no text")
    return _windows(tokenizer, [x for x in lines if x], seq_len)


# ---------------------------------------------------------------------------- loss and step


def distill_loss(student, s_cfg, teacher, t_cfg, tokens_BxS, temperature, weights):
    """(total, {kl, lm, cos}) of the student on a batch of full windows."""
    t_out = forward(teacher, t_cfg, tokens_BxS, full_logits=True, return_hidden=True)
    t_logits, t_hidden = jax.lax.stop_gradient((t_out.logits, t_out.hidden_BxSxD))
    s_out = forward(student, s_cfg, tokens_BxS, full_logits=True, return_hidden=True)
    tau = temperature
    p_t = jax.nn.log_softmax(t_logits / tau, axis=-1)
    p_s = jax.nn.log_softmax(s_out.logits / tau, axis=-1)
    kl = tau**2 * (jnp.exp(p_t) * (p_t - p_s)).sum(-1).mean()
    logp = jax.nn.log_softmax(s_out.logits[:, :-1], axis=-1)
    lm = -jnp.take_along_axis(logp, tokens_BxS[:, 1:, None], axis=-1).mean()
    h_s, h_t = s_out.hidden_BxSxD, t_hidden
    cos = (h_s * h_t).sum(-1) / (
        jnp.linalg.norm(h_s, axis=-1) * jnp.linalg.norm(h_t, axis=-1) + 1e-8
    )
    parts = {"kl": kl, "lm": lm, "cos": (1.0 - cos).mean()}
    total = weights[0] * parts["kl"] + weights[1] * parts["lm"] + weights[2] * parts["cos"]
    return total, parts


def split_trained(student: dict, cfg: DistillConfig) -> tuple[dict, dict]:
    """(the parameters that train, the ones that stay fixed) of a student pytree."""
    if not cfg.freeze_embeddings:
        return student, {}
    keep = TRAINED_WITH_FROZEN_EMBEDDINGS
    return {k: student[k] for k in keep}, {k: v for k, v in student.items() if k not in keep}


def make_optimizer(cfg: DistillConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(cfg.learning_rate, weight_decay=cfg.weight_decay),
    )


@functools.lru_cache(maxsize=8)
def _step_fn(s_cfg: LlamaConfig, t_cfg: LlamaConfig, cfg: DistillConfig):
    opt = make_optimizer(cfg)

    def loss(trained, fixed, teacher, tokens_BxS):
        student = {**fixed, **trained}
        return distill_loss(student, s_cfg, teacher, t_cfg, tokens_BxS, cfg.temperature,
                            cfg.weights)  # fmt: skip

    @jax.jit
    def step(trained, opt_state, fixed, teacher, tokens_BxS):
        trained, opt_state, (value, parts), _ = optax_step(loss, opt, has_aux=True)(
            trained, opt_state, fixed, teacher, tokens_BxS
        )
        return trained, opt_state, {"loss": value, **parts}

    return opt, step


# ---------------------------------------------------------------------------- the loop


@dataclasses.dataclass
class DistillResult:
    params: dict
    cfg: LlamaConfig
    history: list[dict]


def distill(
    teacher_params,
    cfg: LlamaConfig,
    corpus_NxS,
    dcfg: DistillConfig,
    run_dir: str | pathlib.Path | None = None,
    *,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
) -> DistillResult:
    """Distil the student from `teacher_params` on token windows `corpus_NxS` (ids).

    run_dir: Orbax checkpoints and log.jsonl; an existing run there resumes (same config
    required, except `steps`: a run extended to more steps equals one run to that many, as a
    batch is a function of (seed, step) and the learning rate is constant). on_step(step,
    row) is called after every step (1-based).
    """
    corpus_NxS = np.asarray(corpus_NxS)
    if corpus_NxS.ndim != 2 or corpus_NxS.shape[0] == 0:
        raise ValueError(f"corpus must be a non-empty N x S array of ids, got {corpus_NxS.shape}")
    if corpus_NxS.shape[1] < dcfg.seq_len:
        raise ValueError(f"corpus windows ({corpus_NxS.shape[1]}) shorter than seq_len")
    corpus_NxS = corpus_NxS[:, : dcfg.seq_len]
    student, s_cfg = make_student(teacher_params, cfg, dcfg.layers)
    trained, fixed = split_trained(student, dcfg)
    opt, step_fn = _step_fn(s_cfg, cfg, dcfg)
    record = json.loads(json.dumps(dataclasses.asdict(dcfg)))

    def on_resume(state):
        if {**state.info["config"], "steps": dcfg.steps} != record:
            raise ValueError(f"{run_dir} holds a distillation run with another config")
        if state.step > dcfg.steps:
            raise ValueError(f"{run_dir} holds {state.step} steps, more than {dcfg.steps}")

    def step(state):
        tokens = jnp.asarray(corpus_NxS[batch_indices(dcfg, len(corpus_NxS), state.step)])
        t = state.tree
        trained, opt_state, metrics = step_fn(
            t["student"], t["opt_state"], fixed, teacher_params, tokens
        )
        row = {"step": state.step + 1, **{k: float(v) for k, v in metrics.items()}}
        tree = {"student": trained, "opt_state": opt_state}
        return state.replace(tree=tree, step=state.step + 1), [row]

    tree = {"student": trained, "opt_state": opt.init(trained)}
    state, history, _ = run_loop(
        step, LoopState(tree, 0, {"config": record}), dcfg.steps, run_dir=run_dir,
        every=dcfg.checkpoint_every, on_resume=on_resume, on_step=on_step, desc="POST distil",
        progress=progress,
    )  # fmt: skip
    return DistillResult({**fixed, **state.tree["student"]}, s_cfg, history)
