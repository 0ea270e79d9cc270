"""Provider-side set-up of a scoring service for each black-box method.

- BBT / BBTv2 (`bbt_adapters`): "none", and "prompt" / "deep_prompt" with BBT's p0 added on
  the provider side (`service.p0`), so the user's payload is A z alone.
- CBP-Tuning (`cbp_service`): "none" and "task_vector" requests through a trained prompt
  generator, whose weights stay here (the user gets only `artifact.release()`).
"""

from __future__ import annotations

from cbp_jax.model.fingerprint import check_model
from cbp_jax.service.oracle import CBPGenerator, DeepPrompt, NoPrompt, SoftPrompt
from cbp_jax.service.provider import ScoringService


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
