"""The provider core: what every scoring provider publishes, checks and charges, in one place.

Both transports use it: the in-process `ScoringService` (provider.py) and the HTTP
`ScoreServer` (serve/app.py, a thin adapter: keys, bodies, idempotency, the scheduler).

- `public_info()`: the model's public facts (`contract.PublicInfo`); the per-layer hidden
  std only where deep prompts are accepted (BBTv2, its only user: one forward on a public
  text). `public_dict()` is the same as JSON for `/v1/info`.
- `admit(request)`: the request's price in calls (P: one per candidate, whatever its
  batch) after every check, in order: the per-request limits (if any), validation against
  the model's public shapes (`requests.validate_request`), and a payload finite in float32
  and in the compute dtype (a float64 1e300 is finite on the wire and inf after the cast).
  Raises `contract.MalformedRequestError`; nothing is charged.
- `check_scores(logprobs)`: scores must be finite, else MalformedRequestError (nothing
  charged: the caller releases its hold).
- Charging goes through a `budget.Budget` (hold before compute, commit after the checked
  scores, release on any failure): `ApiBudget` in memory, `serve.ledger.Ledger` in SQLite.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from cbp_jax.contract import MalformedRequestError, PublicInfo, ScoreRequest
from cbp_jax.service.hidden_stats import layer_input_stds
from cbp_jax.service.requests import validate_request


class ProviderCore:
    """A model behind its adapters: public info, checks and prices of score requests.

    limits: an object with `check(request)` (e.g. `serve.limits.ServeLimits`) applied first;
    None: no per-request bounds beyond validation (the in-process default).
    """

    def __init__(self, model, adapters, adapter_params=None, *, model_name="", limits=None):
        self.model, self.adapter_params, self.limits = model, adapter_params, limits
        self.adapters = {a.kind: a for a in adapters}
        self.name = model_name or str(model.source)
        self.shapes = {k: a.payload_shape(model.cfg) for k, a in self.adapters.items()}
        self.compute_dtype = np.dtype(model.params["embed"].dtype)
        self._hidden_std = None
        for a in adapters:
            ids = getattr(a, "p0_token_ids", None)
            if ids is not None and max(ids) >= model.cfg.vocab_size:
                raise ValueError(
                    f"{type(a).__name__}.p0_token_ids reach {max(ids)}, beyond the vocabulary "
                    f"({model.cfg.vocab_size} tokens)"
                )

    def public_info(self) -> PublicInfo:
        cfg = self.model.cfg
        if self._hidden_std is None:  # only BBTv2 (deep prompts) uses them: one forward
            deep = "deep_prompt" in self.adapters
            self._hidden_std = layer_input_stds(self.model) if deep else ()
        return PublicInfo(
            model_name=self.name,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            vocab_size=cfg.vocab_size,
            embedding_std=float(jnp.std(self.model.params["embed"].astype(jnp.float32))),
            accepted_kinds=tuple(sorted(self.adapters)),
            tokenizer=self.model.tokenizer,
            hidden_std=self._hidden_std,
        )

    def public_dict(self) -> dict:
        """`public_info()` as JSON (no tokenizer; tuples as lists), for `/v1/info`."""
        info = dataclasses.asdict(dataclasses.replace(self.public_info(), tokenizer=None))
        del info["tokenizer"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in info.items()}

    def admit(self, req: ScoreRequest) -> int:
        """Check `req` (limits, validation, finite payload); return its price in calls."""
        if self.limits is not None:
            self.limits.check(req)
        validate_request(req, vocab_size=self.model.cfg.vocab_size, payload_shape=self.shapes)
        if req.payload is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                payload = np.asarray(req.payload, np.float32)
                cast = np.asarray(jnp.asarray(payload, self.compute_dtype), np.float32)
            if not (np.isfinite(payload).all() and np.isfinite(cast).all()):
                raise MalformedRequestError(
                    f"{req.kind!r} payload is not finite in float32 / {self.compute_dtype} "
                    "(NaN, inf, or values beyond the compute dtype's range)"
                )
        return req.calls

    @staticmethod
    def check_scores(logprobs) -> np.ndarray:
        """The scores as float32, or MalformedRequestError if any is not finite."""
        out = np.asarray(logprobs, np.float32)
        if not np.isfinite(out).all():
            raise MalformedRequestError(
                "the scores of this payload are not finite (payload values too large "
                "for the model?); nothing was charged"
            )
        return out
