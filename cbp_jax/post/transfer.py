"""POST step 3, provider side: transfer the user's student prompt to the teacher, public data only.

Given the student S with the user's prompt p_s, the provider trains the teacher's prompt p_t
(initialised to p_s; both live in the same embedding space) on public inputs rendered in the
private task's template, matching answer-position logits with the public code's loss
(`transfer_loss.mix_loss`: tau^2 KL(S || T) at tau = 2 on the prompted outputs and, weighted
by alpha, on the prompts' effects T(p_t + x) - T(x) against S(p_s + x) - S(x)). Fixed number
of steps; with an `evaluate` callback the accuracy is recorded every `eval_every` steps and at
the last, for the last and the best over steps (`best_and_last`).

Privacy boundary, enforced in code: `transfer` accepts only a `PublicData`, which can only be
built by its constructors from public sources (registry tasks that are not private, plain
text, a text file); they refuse the private tasks, examples carrying the private marker
(`mark_private`) and examples whose id or text belongs to a private task's data.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.checks import one_of, positive, positive_ints
from cbp_jax.data.batching import Inputs, candidate_ids, encode, left_pad
from cbp_jax.data.spec import TaskSpec, truncate
from cbp_jax.loop import LoopState, optax_step, run_loop
from cbp_jax.model.config import LlamaConfig
from cbp_jax.post.audit import prompted_logits
from cbp_jax.post.transfer_loss import CODE_ALPHA, KL_DIRECTIONS, TAU, mix_loss, paper_alpha

PRIVATE_TASKS = ("sst2", "financial_phrasebank")
PRIVATE_MARKER = "_private"
_BUILD = object()  # only this module's constructors hold it


class PrivacyBoundaryError(ValueError):
    """Private data was offered to the provider-side transfer."""


def mark_private(examples: Sequence[dict]) -> list[dict]:
    """Copies of the user's examples carrying the private marker."""
    return [{**ex, PRIVATE_MARKER: True} for ex in examples]


@functools.lru_cache(maxsize=4)
def _private_keys(tasks: tuple[str, ...]) -> tuple[frozenset, frozenset]:
    """(ids, texts) of every example of the private tasks (both pools)."""
    from cbp_jax.data.tasks import get_task, load_examples

    ids, texts = set(), set()
    for name in tasks:
        for ex in load_examples(name, "all"):
            ids.add(ex["id"])
            texts.update(str(ex[f]).strip() for f in get_task(name).fields)
    return frozenset(ids), frozenset(texts)


def _check_public(examples: Sequence[dict], private_tasks: Sequence[str]) -> None:
    marked = [i for i, ex in enumerate(examples) if ex.get(PRIVATE_MARKER)]
    if marked:
        raise PrivacyBoundaryError(
            f"{len(marked)} examples carry the private marker (e.g. #{marked[0]})"
        )
    ids, texts = _private_keys(tuple(private_tasks))
    for ex in examples:
        if ex.get("id") in ids:
            raise PrivacyBoundaryError(f"example id {ex['id']!r} belongs to a private task")
        hit = [k for k, v in ex.items() if isinstance(v, str) and v.strip() in texts]
        if hit:
            raise PrivacyBoundaryError(f"example field {hit[0]!r} is text of a private task")


@dataclasses.dataclass(frozen=True, eq=False)
class PublicData:
    """Public inputs in the private task's template: tokens, mask, candidates; no labels."""

    tokens_BxS: np.ndarray
    mask_BxS: np.ndarray
    candidates_CxW: np.ndarray
    source: str
    _key: object = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if self._key is not _BUILD:
            raise PrivacyBoundaryError(
                "build PublicData with PublicData.from_task / from_texts / from_file"
            )
        if self.tokens_BxS.shape[0] == 0:
            raise ValueError(f"public set {self.source!r} is empty")

    @classmethod
    def from_examples(cls, tokenizer, task: TaskSpec, examples: Sequence[dict], source: str, *,
                      private_tasks: Sequence[str] = PRIVATE_TASKS, pad_to: int = 8):  # fmt: skip
        """Examples (dicts with the template's fields) rendered in `task`'s template."""
        if not examples:
            raise ValueError(f"public set {source!r} is empty")
        _check_public(examples, private_tasks)
        seqs = encode(tokenizer, [task.render(ex) for ex in examples])
        tokens, mask = left_pad(seqs, tokenizer.pad_token_id or 0, pad_to)
        return cls(tokens, mask, candidate_ids(tokenizer, task.label_words), source, _BUILD)

    @classmethod
    def from_texts(cls, tokenizer, task: TaskSpec, texts: Sequence[str], source: str, *,
                   private_tasks: Sequence[str] = PRIVATE_TASKS, max_chars: int = 400):  # fmt: skip
        """Plain texts placed in the single text field of `task`'s template."""
        if len(task.fields) != 1:
            raise ValueError(f"task {task.name} has fields {task.fields}; use from_examples")
        examples = [{task.fields[0]: truncate(t.strip(), max_chars)} for t in texts if t.strip()]
        return cls.from_examples(tokenizer, task, examples, source, private_tasks=private_tasks)

    @classmethod
    def from_task(cls, tokenizer, task: TaskSpec, public_name: str, n: int, seed: int = 0, **kw):
        """n texts of a shipped public task's TRAIN pool (its text fields joined by '. ');
        kw: `from_texts`' private_tasks and max_chars."""
        private_tasks = kw.get("private_tasks", PRIVATE_TASKS)
        if public_name in private_tasks:
            raise PrivacyBoundaryError(f"{public_name!r} is a private task")
        from cbp_jax.data.splits import train_pool
        from cbp_jax.data.tasks import get_task

        pool = train_pool(public_name)
        fields = [f for f in get_task(public_name).fields if f not in ("A", "B", "C", "D")]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        pick = rng.permutation(len(pool))[:n]
        _check_public([pool[i] for i in pick], private_tasks)
        texts = [". ".join(str(pool[i][f]).strip() for f in fields) for i in pick]
        return cls.from_texts(tokenizer, task, texts, f"{public_name}[{n}]", **kw)

    @classmethod
    def from_file(cls, tokenizer, task: TaskSpec, path, **kw):
        """One public text per non-empty line of a UTF-8 file; kw: `from_texts`'."""
        lines = pathlib.Path(path).read_text("utf-8").splitlines()
        return cls.from_texts(tokenizer, task, lines, str(path), **kw)


alpha_heuristic = paper_alpha  # the earlier name


def batch_indices(cfg, n: int, step: int) -> np.ndarray:
    """cfg.batch_size indices into n examples for a step: a pure function of (cfg.seed, step)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, step]))
    return rng.choice(n, size=cfg.batch_size, replace=n < cfg.batch_size)


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    steps: int = 200
    batch_size: int = 8
    learning_rate: float = 1e-3
    temperature: float = TAU
    alpha: float = CODE_ALPHA
    seed: int = 0
    kl_direction: str = KL_DIRECTIONS[0]  # KL(S || T), as the public code

    def __post_init__(self):
        positive_ints(self, "steps", "batch_size")
        positive(self, "learning_rate", "temperature")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"TransferConfig.alpha must be in [0, 1], got {self.alpha}")
        one_of(self, "kl_direction", KL_DIRECTIONS)


def transfer_loss(
    p_t_TxD, teacher, t_cfg, student, s_cfg, p_s_TxD, tokens_BxS, mask_BxS, alpha, tau,
    direction=KL_DIRECTIONS[0],
):  # fmt: skip
    """`mix_loss` of the teacher with p_t against the student with p_s on a public batch."""

    def logits(params, cfg, prompt):
        return prompted_logits(params, cfg, prompt, tokens_BxS, mask_BxS)

    t_p = logits(teacher, t_cfg, p_t_TxD)
    t_0, s_p, s_0 = jax.lax.stop_gradient(
        (
            logits(teacher, t_cfg, None),
            logits(student, s_cfg, p_s_TxD),
            logits(student, s_cfg, None),
        )
    )
    return mix_loss(t_p, t_0, s_p, s_0, alpha, tau, direction)


@functools.lru_cache(maxsize=8)
def _step_fn(t_cfg: LlamaConfig, s_cfg: LlamaConfig, tcfg: TransferConfig):
    """(optimiser, jitted step); alpha is an argument (one compile for every alpha: pass
    tcfg with alpha and seed at their defaults, as `transfer` does)."""
    opt = optax.adam(tcfg.learning_rate)

    @jax.jit
    def step(p_t, opt_state, models, batch, alpha):
        (teacher, student, p_s), (tokens, mask) = models, batch
        return optax_step(transfer_loss, opt)(
            p_t, opt_state, teacher, t_cfg, student, s_cfg, p_s, tokens, mask, alpha,
            tcfg.temperature, tcfg.kl_direction,
        )[:3]  # fmt: skip

    return opt, step


def transfer(
    teacher_params,
    t_cfg: LlamaConfig,
    student_params,
    s_cfg: LlamaConfig,
    student_prompt_TxD,
    public: PublicData,
    tcfg: TransferConfig,
    progress: bool = True,
    evaluate=None,
    eval_every: int = 30,
):
    """The teacher's prompt T x D (the last step's) and the history; `public` must be a
    PublicData. evaluate(p_t) -> accuracy, if given, runs at steps 1, 1 + eval_every, ...
    (the code's `step % interval == 1`) and at the last step; those entries carry "acc"."""
    if isinstance(public, Inputs) or not isinstance(public, PublicData):
        raise PrivacyBoundaryError(
            f"transfer takes only PublicData, got {type(public).__name__} (private data?)"
        )
    if public._key is not _BUILD or public.tokens_BxS.shape[0] == 0:
        raise PrivacyBoundaryError("PublicData not built by its public constructors")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    p_s = jnp.asarray(student_prompt_TxD, jnp.float32)
    opt, step_fn = _step_fn(t_cfg, s_cfg, dataclasses.replace(tcfg, alpha=CODE_ALPHA, seed=0))
    alpha = jnp.float32(tcfg.alpha)
    tokens, mask = (jnp.asarray(x, jnp.int32) for x in (public.tokens_BxS, public.mask_BxS))
    n = tokens.shape[0]

    models = (teacher_params, student_params, p_s)

    def step(state):
        idx = jnp.asarray(batch_indices(tcfg, n, state.step))
        t, batch = state.tree, (tokens[idx], mask[idx])
        p_t, opt_state, loss = step_fn(t["p_t"], t["opt_state"], models, batch, alpha)
        row = {"step": state.step + 1, "loss": float(loss)}
        if evaluate is not None and (state.step % eval_every == 0 or row["step"] == tcfg.steps):
            row["acc"] = float(evaluate(np.asarray(p_t)))
        return LoopState({"p_t": p_t, "opt_state": opt_state}, row["step"]), [row]

    state = LoopState({"p_t": p_s, "opt_state": opt.init(p_s)})
    state, history, _ = run_loop(step, state, tcfg.steps, desc="POST transfer", progress=progress)
    return np.asarray(state.tree["p_t"]), history
