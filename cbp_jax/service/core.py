"""The provider core: what every scoring provider publishes, checks and charges, in one place.

Both transports use it: the in-process `ScoringService` (provider.py) and the HTTP
`ScoreServer` (serve/app.py, a thin adapter: keys, bodies, idempotency, the scheduler).

- `public_info()`: the model's public facts (`contract.PublicInfo`); the per-layer hidden
  std only where deep prompts are accepted (BBTv2, its only user: one forward on a public
  text). `public_dict()` is the same as JSON for `/v1/info`.
- `admit(request)`: the request's price in calls (P) after every check, in order: the
  per-request limits (if any), `validate_request` against the model's public shapes, and a
  payload finite in float32 and in the compute dtype (a float64 1e300 is finite on the wire
  and inf after the cast). Raises `contract.MalformedRequestError`; nothing is charged.
- `check_scores(logprobs)`: scores must be finite, else MalformedRequestError (the caller
  releases its hold). Charging goes through a `budget.Budget`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from cbp_jax.contract import PAYLOAD_KINDS, MalformedRequestError, PublicInfo, ScoreRequest
from cbp_jax.service.hidden_stats import layer_input_stds


def _fail(msg: str):
    raise MalformedRequestError(msg)


def validate_request(req: ScoreRequest, *, vocab_size: int, payload_shape: dict) -> None:
    """Check a request against the model's public shapes; raise MalformedRequestError.

    payload_shape maps an accepted kind to its expected shape with None for free axes
    (P, T), e.g. {"prompt": (None, None, 576)}.
    """
    if req.kind not in PAYLOAD_KINDS:
        _fail(f"unknown request kind {req.kind!r}; known: {PAYLOAD_KINDS}")
    if req.kind not in payload_shape:
        _fail(
            f"this service does not accept {req.kind!r} requests; "
            f"it accepts {sorted(payload_shape)}"
        )
    tokens, mask, cands = (
        np.asarray(x) for x in (req.tokens_BxS, req.mask_BxS, req.candidates_CxW)
    )
    if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        _fail(f"tokens must be a non-empty B x S array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer) or not np.issubdtype(cands.dtype, np.integer):
        _fail(f"token and candidate ids must be integers, got {tokens.dtype} and {cands.dtype}")
    if mask.shape != tokens.shape:
        _fail(f"mask shape {mask.shape} != tokens shape {tokens.shape}")
    if not np.isin(mask, (0, 1)).all() or (mask.sum(axis=1) == 0).any():
        _fail("mask must be 0/1 with at least one real token per row")
    if cands.ndim != 2 or cands.size == 0:
        _fail(f"candidates must be a non-empty C x W array, got shape {cands.shape}")
    for name, ids in (("token", tokens), ("candidate", cands)):
        if ids.min() < 0 or ids.max() >= vocab_size:
            _fail(f"{name} ids out of range [0, {vocab_size}): min {ids.min()}, max {ids.max()}")
    expected = payload_shape[req.kind]
    if expected is None:
        if req.payload is not None:
            _fail(f"{req.kind!r} requests carry no payload")
        return
    payload = req.payload
    if payload is None or not hasattr(payload, "shape"):
        _fail(f"{req.kind!r} request needs an array payload")
    if not np.issubdtype(np.asarray(payload).dtype, np.floating):
        _fail(f"payload must be floating point, got {np.asarray(payload).dtype}")
    if len(payload.shape) != len(expected) or any(
        e is not None and e != g for e, g in zip(expected, payload.shape, strict=True)
    ):
        axes = " x ".join("*" if e is None else str(e) for e in expected)
        _fail(f"{req.kind!r} payload must have shape {axes}, got {tuple(payload.shape)}")
    if 0 in payload.shape:
        _fail(f"{req.kind!r} payload is empty: shape {tuple(payload.shape)}")
    if not np.isfinite(np.asarray(payload)).all():
        _fail(f"{req.kind!r} payload contains NaN or inf")


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
