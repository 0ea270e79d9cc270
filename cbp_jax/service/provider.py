"""`ScoringService`: the provider object. Holds the model, answers score requests, counts.

Eager path: `score(request)` validates, charges the budget (P calls: one per candidate,
whatever the number of examples; BBT's unit), runs the jitted pure scoring function and
returns candidate log-probs with the calls, examples and tokens scored. Compiled path:
`oracle()` hands the user's scanned loop a jittable handle, one oracle call = one batch =
P calls however many length buckets it holds, and `reserve(calls)` charges each chunk of
generations before it runs, so the two paths count identically.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.contract import PublicInfo, ScoreRequest, ScoreResponse
from cbp_jax.model.registry import LoadedModel
from cbp_jax.service.budget import ApiBudget
from cbp_jax.service.hidden_stats import layer_input_stds
from cbp_jax.service.oracle import NoPrompt, Oracle, PromptAdapter, SoftPrompt, score_population
from cbp_jax.service.requests import validate_request


class ScoringService:
    """Black-box model behind a narrow interface; weights stay in private attributes."""

    def __init__(
        self,
        model: LoadedModel,
        adapters: tuple[PromptAdapter, ...] = (NoPrompt(), SoftPrompt()),
        adapter_params: Any = None,
        budget: int | None = None,
        population_chunk: int | str | None = "auto",
        model_name: str = "",
    ):
        self._model = model
        self._adapters = {a.kind: a for a in adapters}
        self._adapter_params = adapter_params
        self._budget = ApiBudget(budget)
        self._chunk = population_chunk
        self._name = model_name or model.source
        self._jitted = {}
        self._hidden_std = None
        self.examples_scored = 0  # eager requests only; the engine keeps its own ledger
        self.tokens_scored = 0
        for a in adapters:
            ids = getattr(a, "p0_token_ids", None)
            if ids is not None and max(ids) >= model.cfg.vocab_size:
                raise ValueError(
                    f"{type(a).__name__}.p0_token_ids reach {max(ids)}, beyond the vocabulary "
                    f"({model.cfg.vocab_size} tokens)"
                )

    @property
    def calls_used(self) -> int:
        return self._budget.used

    @property
    def calls_remaining(self) -> int | None:
        return self._budget.remaining

    def public_info(self) -> PublicInfo:
        cfg = self._model.cfg
        if self._hidden_std is None:  # only BBTv2 (deep prompts) uses them: one forward
            deep = "deep_prompt" in self._adapters
            self._hidden_std = layer_input_stds(self._model) if deep else ()
        return PublicInfo(
            model_name=self._name,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            vocab_size=cfg.vocab_size,
            embedding_std=float(jnp.std(self._model.params["embed"].astype(jnp.float32))),
            accepted_kinds=tuple(sorted(self._adapters)),
            tokenizer=self._model.tokenizer,
            hidden_std=self._hidden_std,
        )

    def _payload_shapes(self) -> dict:
        return {k: a.payload_shape(self._model.cfg) for k, a in self._adapters.items()}

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
        """Validate, charge P calls, and return candidate-token log-probs."""
        validate_request(
            request, vocab_size=self._model.cfg.vocab_size, payload_shape=self._payload_shapes()
        )
        self._budget.charge(request.calls)
        payload = None if request.payload is None else jnp.asarray(request.payload, jnp.float32)
        out = self._fn(request.kind)(
            self._model.params,
            self._adapter_params,
            payload,
            jnp.asarray(request.tokens_BxS, jnp.int32),
            jnp.asarray(request.mask_BxS, jnp.int32),
            jnp.asarray(request.candidates_CxW, jnp.int32),
        )
        self.examples_scored += request.examples
        self.tokens_scored += request.tokens
        return ScoreResponse(np.asarray(out), request.calls, request.examples, request.tokens)

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
