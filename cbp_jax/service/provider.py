"""`ScoringService`: the in-process provider (a `contract.ScoringAPI`). Holds the model,
answers score requests, counts.

Eager path: `score(request)` goes through the provider core (core.py: the same checks,
price and public info as the HTTP server), holds P calls in the in-memory budget, scores,
checks the scores and commits the charge. Compiled path: `oracle()` hands the user's
scanned loop a jittable handle (one oracle call = one batch = P calls) and
`reserve(calls)` charges each chunk of generations before it runs, so both count alike.

Set-up per method: `bbt_adapters` (BBT / BBTv2: "none", "prompt", "deep_prompt" with BBT's
p0 added provider side, `service.p0`, so the payload is A z alone) and `cbp_service`
(CBP-Tuning: "none" and "task_vector" through a trained prompt generator, whose weights
stay here; the user gets only `artifact.release()`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from cbp_jax.contract import PublicInfo, ScoreRequest, ScoreResponse
from cbp_jax.model.fingerprint import check_model
from cbp_jax.model.registry import LoadedModel
from cbp_jax.service.budget import ApiBudget
from cbp_jax.service.core import ProviderCore
from cbp_jax.service.oracle import (
    CBPGenerator,
    DeepPrompt,
    NoPrompt,
    Oracle,
    PromptAdapter,
    SoftPrompt,
    score_population,
)

ACCOUNT = "local"  # the in-memory budget's one account


class ScoringService:
    """Black-box model behind a narrow interface; weights stay in private attributes.

    limits: optional per-request bounds (`serve.limits.ServeLimits`), as the HTTP server's.
    """

    def __init__(
        self,
        model: LoadedModel,
        adapters: tuple[PromptAdapter, ...] = (NoPrompt(), SoftPrompt()),
        adapter_params: Any = None,
        budget: int | None = None,
        population_chunk: int | str | None = "auto",
        model_name: str = "",
        limits=None,
    ):
        self._core = ProviderCore(
            model, adapters, adapter_params, model_name=model_name, limits=limits
        )
        self._model, self._adapters = model, self._core.adapters
        self._adapter_params = adapter_params
        self._budget = ApiBudget(budget)
        self._chunk = population_chunk
        self._jitted = {}
        self.examples_scored = 0  # eager requests only; the engine keeps its own ledger
        self.tokens_scored = 0

    @property
    def calls_used(self) -> int:
        return self._budget.used

    @property
    def calls_remaining(self) -> int | None:
        return self._budget.remaining

    def public_info(self) -> PublicInfo:
        return self._core.public_info()

    def _fn(self, kind: str):
        if kind not in self._jitted:
            fn = functools.partial(
                score_population,
                cfg=self._model.cfg,
                adapter=self._adapters[kind],
                population_chunk=self._chunk,
            )
            self._jitted[kind] = jax.jit(fn)
        return self._jitted[kind]

    def score(self, request: ScoreRequest) -> ScoreResponse:
        """Check, hold P calls, score, check the scores, charge; candidate-token log-probs."""
        calls = self._core.admit(request)
        self._budget.hold(ACCOUNT, calls)
        try:
            payload = request.payload
            payload = None if payload is None else jnp.asarray(payload, jnp.float32)
            out = self._fn(request.kind)(
                self._model.params,
                self._adapter_params,
                payload,
                jnp.asarray(request.tokens_BxS, jnp.int32),
                jnp.asarray(request.mask_BxS, jnp.int32),
                jnp.asarray(request.candidates_CxW, jnp.int32),
            )
            logprobs = self._core.check_scores(out)
        except BaseException:
            self._budget.release(ACCOUNT, calls)
            raise
        self._budget.commit(ACCOUNT, None, "", "", calls, b"")
        self.examples_scored += request.examples
        self.tokens_scored += request.tokens
        return ScoreResponse(logprobs, calls, request.examples, request.tokens)

    def reserve(self, calls: int) -> None:
        """Charge calls that a compiled in-process loop is about to make (or raise): P per
        oracle call (one batch, any number of buckets)."""
        self._budget.charge(calls)

    def oracle(self, kind: str) -> Oracle:
        """Jittable handle for compiled loops; pair every use with `reserve`."""
        if kind not in self._adapters:
            raise ValueError(
                f"this service does not accept {kind!r}; it accepts {sorted(self._adapters)}"
            )
        static = (self._model.cfg, self._adapters[kind], self._chunk)
        return Oracle((self._model.params, self._adapter_params), static)


def bbt_adapters(p0_token_ids: tuple[int, ...] | None) -> tuple:
    """The adapters of a BBT / BBTv2 service whose p0 is the embeddings of `p0_token_ids`
    (T ids, `service.p0.p0_token_ids`; None: no p0). Build every service of a run with
    them, the test-set evaluator too, since the payload is A z alone."""
    ids = p0_token_ids
    return (NoPrompt(), SoftPrompt(p0_token_ids=ids), DeepPrompt(p0_token_ids=ids))


def cbp_service(model, artifact, **service_kwargs) -> ScoringService:
    """A service accepting "none" and "task_vector" requests through this generator
    (a `prompts.artifact.GeneratorArtifact` trained for `model`)."""
    check_model(artifact.model, model)
    return ScoringService(
        model,
        adapters=(NoPrompt(), CBPGenerator(task_dims=artifact.cfg.task_dims)),
        adapter_params=artifact.adapter_params(),
        **service_kwargs,
    )
