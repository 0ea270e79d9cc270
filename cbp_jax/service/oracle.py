"""The pure scoring function behind the service, and the in-process `Oracle` handle.

`score_population` scores a population on one batch: each candidate's prompt is built by a
provider-side adapter (BBT's soft prompts, BBTv2's deep prompts, CBP's prompt generator),
the model gives logits at the answer position only (a prompt shared by the whole batch is
computed once per candidate: `forward_shared_prompt`), and the log-softmax is read at the
candidate token ids. Population is the leading axis (vmap, or lax.map in chunks).

`Oracle` is what the compiled in-process loop receives instead of a network client: a
pytree whose leaves are the provider's arrays (jit takes them as arguments, not constants)
and whose only method returns candidate log-probs. One oracle call is one batch:
`oracle(payload, buckets, candidates_CxW)` scores the P candidates on every length bucket
of one k-shot set and costs P calls however many buckets there are; callers reserve them
with the service before the compiled loop runs.

BBT's p0: `SoftPrompt(p0_token_ids=ids)` / `DeepPrompt(p0_token_ids=ids)` add the
embeddings of those tokens (`service.p0`) to the user's payload on the provider side, so
z = 0 is a real prompt and the user never sees an embedding; None adds nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import jax
import jax.numpy as jnp

from cbp_jax.checks import check_positive
from cbp_jax.contract import check_buckets
from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.decoder import forward, forward_shared_prompt


class PromptAdapter(Protocol):
    """Provider-side map from one candidate's payload to model prompts."""

    kind: str
    payload_axis: int  # population axis of the payload

    def payload_shape(self, cfg: LlamaConfig) -> tuple | None: ...

    def prompts(self, adapter_params, model_params, cfg, payload, tokens_BxS, mask_BxS):
        """-> (prompt_BxTxD or None, deep_prompts_LxBxTxD or None) for one candidate."""


@dataclasses.dataclass(frozen=True)
class _P0Prompt:
    """What BBT's and BBTv2's prompts share: the provider's p0 token ids (validated) and a
    payload of T x D per prompt (`lead`: the axes before it, e.g. the layers)."""

    p0_token_ids: tuple[int, ...] | None = None
    shared: ClassVar[bool] = True  # one prompt for the whole batch: computed once

    def __post_init__(self):
        ids, name = self.p0_token_ids, type(self).__name__
        if ids is None:
            return
        if not isinstance(ids, tuple) or not ids or not all(isinstance(i, int) for i in ids):
            raise ValueError(f"{name}.p0_token_ids must be a non-empty tuple of ints or None")
        if min(ids) < 0:
            raise ValueError(f"{name}.p0_token_ids must be >= 0, got min {min(ids)}")

    def lead(self, cfg) -> tuple:
        return ()

    def payload_shape(self, cfg):
        t = None if self.p0_token_ids is None else len(self.p0_token_ids)
        return (*self.lead(cfg), None, t, cfg.hidden_size)

    def prompts(self, adapter_params, model_params, cfg, payload, tokens_BxS, mask_BxS):
        """`shared_prompts` broadcast to every example of the batch (the per-example path)."""
        prompt, deep = self.shared_prompts(adapter_params, model_params, cfg, payload)
        b = tokens_BxS.shape[0]
        prompt = None if prompt is None else jnp.broadcast_to(prompt, (b, *prompt.shape))
        if deep is not None:
            deep = jnp.broadcast_to(deep[:, None], (deep.shape[0], b, *deep.shape[1:]))
        return prompt, deep


def token_embeddings(model_params, ids) -> jax.Array:
    """T x D float32 embeddings of the token ids `ids` (the provider's p0)."""
    return jnp.take(model_params["embed"], jnp.asarray(ids, jnp.int32), axis=0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class NoPrompt:
    kind: ClassVar[str] = "none"
    payload_axis: ClassVar[int] = 0

    def payload_shape(self, cfg):
        return None

    def prompts(self, adapter_params, model_params, cfg, payload, tokens_BxS, mask_BxS):
        return None, None


@dataclasses.dataclass(frozen=True)
class SoftPrompt(_P0Prompt):
    """BBT: the payload is the prompt itself, T x D per candidate, shared by all examples.

    p0_token_ids: provider setting; the prompt is payload + embed[p0_token_ids] (T ids).
    """

    kind: ClassVar[str] = "prompt"
    payload_axis: ClassVar[int] = 0

    def shared_prompts(self, adapter_params, model_params, cfg, prompt_TxD):
        if self.p0_token_ids is None:
            return prompt_TxD, None
        return prompt_TxD + token_embeddings(model_params, self.p0_token_ids), None


@dataclasses.dataclass(frozen=True)
class DeepPrompt(_P0Prompt):
    """BBTv2: one T x D prompt per layer, L x T x D per candidate, added to the prompt slots
    before each layer. p0_token_ids: provider setting; the slots start from embed[ids]
    (BBTv2 adds its deep prompts to the hidden states of real tokens) instead of zeros."""

    kind: ClassVar[str] = "deep_prompt"
    payload_axis: ClassVar[int] = 1

    def lead(self, cfg) -> tuple:
        return (cfg.num_layers,)

    def shared_prompts(self, adapter_params, model_params, cfg, deep_LxTxD):
        if self.p0_token_ids is None:
            return None, deep_LxTxD
        return token_embeddings(model_params, self.p0_token_ids), deep_LxTxD


# Measured on 2 CPU cores (SmolLM2): mapping the population in chunks beats vmapping all of
# it (very large activations fall out of cache). P=20 x 16 SST-2 examples in 4 buckets,
# s per generation at 512 / 1024 / 2048 / 4096 text tokens per chunk: bf16 (AMX Xeon) 6.63 /
# 5.90 / 6.25 / 6.89, float32 17.7 / 17.3 / 17.3 / 17.3. "auto" chunks to this many tokens.
TOKENS_PER_CHUNK = 1024


def score_population(
    model_params,
    adapter_params,
    payload,
    tokens_BxS,
    mask_BxS,
    candidates_CxW,
    *,
    cfg: LlamaConfig,
    adapter: PromptAdapter,
    population_chunk: int | str | None = "auto",
):
    """Candidate-token log-probs, P x B x C x W, for every candidate in the payload."""
    c, w = candidates_CxW.shape
    flat = candidates_CxW.reshape(-1)

    shared = getattr(adapter, "shared", False)

    def one(payload_i):
        if shared:  # prompt rows computed once per candidate, not once per example
            prompt_TxD, deep_LxTxD = adapter.shared_prompts(
                adapter_params, model_params, cfg, payload_i
            )
            logits = forward_shared_prompt(
                model_params,
                cfg,
                tokens_BxS,
                mask_BxS,
                prompt_TxD=prompt_TxD,
                deep_prompts_LxTxD=deep_LxTxD,
            )
        else:
            prompt, deep = adapter.prompts(
                adapter_params, model_params, cfg, payload_i, tokens_BxS, mask_BxS
            )
            logits = forward(
                model_params,
                cfg,
                tokens_BxS,
                mask_BxS,
                prompt_BxTxD=prompt,
                deep_prompts_LxBxTxD=deep,
            ).logits
        logp = jax.nn.log_softmax(logits, axis=-1)
        return logp[:, flat].reshape(-1, c, w)

    if payload is None:
        return one(None)[None]
    payload = jnp.moveaxis(payload, adapter.payload_axis, 0)
    if population_chunk == "auto":  # ~TOKENS_PER_CHUNK text tokens per mapped step
        rows = tokens_BxS.shape[0] * tokens_BxS.shape[1]
        population_chunk = max(1, TOKENS_PER_CHUNK // rows)
    if population_chunk and population_chunk < payload.shape[0]:
        return jax.lax.map(one, payload, batch_size=population_chunk)
    return jax.vmap(one)(payload)


@jax.tree_util.register_pytree_node_class
class Oracle:
    """In-process, jittable stand-in for the service: payload + inputs -> log-probs only."""

    def __init__(self, arrays: tuple[Any, Any], static: tuple):
        self._arrays = arrays
        self._static = static

    def tree_flatten(self):
        return (self._arrays,), self._static

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(children[0], static)

    def __call__(self, payload, buckets, candidates_CxW):
        """Log-probs P x (sum of bucket B) x C x W, in bucket order: ONE call per candidate.

        buckets: a tuple of (tokens_BxS, mask_BxS) pairs, the length buckets of one batch.
        """
        cfg, adapter, chunk = self._static
        kw = {"cfg": cfg, "adapter": adapter, "population_chunk": chunk}
        parts = [
            score_population(*self._arrays, payload, t, m, candidates_CxW, **kw)
            for t, m in check_buckets(buckets)
        ]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)

    def __repr__(self):
        return f"Oracle(kind={self._static[1].kind!r})"


@dataclasses.dataclass(frozen=True)
class CBPGenerator:
    """CBP-Tuning: the payload is a task vector z (P x R); the provider's prompt generator
    turns it and each example's mean-pooled input embeddings into that example's T x D
    prompt (docs/methods.md, CBP-Tuning). adapter_params: {"params", "A_DxR"} of a generator
    (`GeneratorArtifact.adapter_params()`); they never leave the provider."""

    task_dims: int
    kind: ClassVar[str] = "task_vector"
    payload_axis: ClassVar[int] = 0

    def __post_init__(self):
        check_positive(self)

    def payload_shape(self, cfg):
        return (None, self.task_dims)

    def prompts(self, adapter_params, model_params, cfg, z_R, tokens_BxS, mask_BxS):
        from cbp_jax.model.decoder import mean_pooled_embeddings
        from cbp_jax.prompts.generator import generator_apply

        a_DxR = adapter_params["A_DxR"]
        if a_DxR.shape != (cfg.hidden_size, self.task_dims):
            raise ValueError(
                f"generator A is {a_DxR.shape}, expected D x R = {cfg.hidden_size} x "
                f"{self.task_dims} (generator made for another model or task_dims?)"
            )
        pooled_BxD = mean_pooled_embeddings(model_params, tokens_BxS, mask_BxS)
        return generator_apply(adapter_params["params"], a_DxR, pooled_BxD, z_R), None
