"""Population chunk size from a memory budget: how many candidates to score at once.

`candidate_bytes` is an upper estimate of one candidate's live activations while
`score_population` maps it (one decoder layer is live at a time: hidden-state copies,
q/k/v, attention scores and weights, the SwiGLU hidden, answer-position logits and the
payload, all in float32 with no credit for XLA's fusion); `chunk_for_memory` divides a
budget for the scoring call's temporaries (XLA's `temp_size_in_bytes`) by it. On a tiny
model the estimate is about 2x the real per-candidate increment, which covers the fixed
temporaries of a chunked call (tests/test_sweep).
"""

from __future__ import annotations

from cbp_jax.model.config import LlamaConfig

F32 = 4  # bytes; activations and attention scores are float32 whatever the weight dtype


def candidate_bytes(
    cfg: LlamaConfig, batch: int, seq_len: int, prompt_len: int, *, shared_prompt: bool = True
) -> int:
    """Upper estimate of one candidate's live activation bytes while it is scored.

    shared_prompt: the prompt is computed once for the batch (BBT / BBTv2 soft prompts,
    `forward_shared_prompt`); False for per-example prompts (the CBP generator).
    """
    for name, v in (("batch", batch), ("seq_len", seq_len), ("prompt_len", prompt_len)):
        if not isinstance(v, int) or v < (0 if name == "prompt_len" else 1):
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    b, s, t = batch, seq_len, prompt_len
    d, f, e = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    h, k = cfg.num_heads, cfg.num_kv_heads
    if shared_prompt:
        rows = t + b * s  # prompt rows once, then every text row
        attention = 3 * b * h * s * (t + s) + 2 * h * t * t  # scores, masked, softmax
    else:
        rows = b * (t + s)
        attention = 3 * b * h * (t + s) ** 2
    per_row = 4 * d + 2 * (h + 2 * k) * e + h * e + 3 * f  # h, norm, out, qkv x2, attn, MLP
    logits = 2 * b * cfg.vocab_size  # answer-position logits and their log-softmax
    payload = t * d * (1 if shared_prompt else b)
    return F32 * (rows * per_row + attention + logits + payload)


def chunk_for_memory(
    budget_bytes: int,
    model_cfg: LlamaConfig,
    batch: int,
    seq_len: int,
    prompt_len: int,
    *,
    shared_prompt: bool = True,
) -> int:
    """Largest `population_chunk` whose estimated activations fit in `budget_bytes`.

    Pass the result to `ScoringService(..., population_chunk=...)` (and to the sweep's
    `SweepConfig.population_chunk`, which also bounds the payload). Raises if the budget
    cannot hold even one candidate.
    """
    per = candidate_bytes(model_cfg, batch, seq_len, prompt_len, shared_prompt=shared_prompt)
    if budget_bytes < per:
        raise ValueError(
            f"memory budget {budget_bytes} B is below one candidate's estimated activations "
            f"({per} B at batch {batch}, seq_len {seq_len}, prompt_len {prompt_len})"
        )
    return int(budget_bytes // per)
