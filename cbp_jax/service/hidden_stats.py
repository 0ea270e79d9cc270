"""Per-layer hidden-state scale, a statistic the provider publishes for BBTv2.

BBTv2 draws each layer's random projection with std alpha * s_l / (sqrt(d) * sigma), s_l
the std of the hidden states entering layer l (the embeddings' for the input layer),
outliers clipped at mean +- 3 std for 5 rounds (its deepbbt.py uses the first training
batch). Here the provider computes them once on a fixed public text (`PUBLIC_TEXT`, or
fixed ids without a tokenizer), so a user learns one float per layer and nothing about its
inputs (`PublicInfo.hidden_std`). Where prompts are scaled by sqrt(D) on entry
(`cfg.embed_scale`, Gemma) they are divided by sqrt(D): the units deep prompts are drawn in.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from cbp_jax.model.decoder import layer_inputs

PUBLIC_TEXT = (
    "The quick brown fox jumps over the lazy dog. A market report said that shares rose "
    "after the company announced better results than expected, while the weather stayed "
    "mild and most people went to work as usual. Is this review positive or negative? "
    "The film was long, but the acting was wonderful and the music was memorable."
)
CLIP_SIGMAS, CLIP_ROUNDS = 3.0, 5  # BBTv2's outlier clipping


def clipped_std(x: np.ndarray, sigmas: float = CLIP_SIGMAS, rounds: int = CLIP_ROUNDS) -> float:
    """Std of x after `rounds` rounds of clipping to mean +- sigmas x std (BBTv2's rule)."""
    x = np.asarray(x, np.float64).reshape(-1)
    for _ in range(rounds):
        mu, sd = x.mean(), x.std()
        x = np.clip(x, mu - sigmas * sd, mu + sigmas * sd)
    return float(x.std())


def public_token_ids(tokenizer, vocab_size: int) -> np.ndarray:
    """The fixed public input: PUBLIC_TEXT's ids, or 64 fixed ids without a tokenizer."""
    if tokenizer is not None:
        ids = tokenizer(PUBLIC_TEXT, add_special_tokens=False)["input_ids"]
        return np.asarray(ids, np.int32)
    return np.random.default_rng(0).integers(0, vocab_size, 64).astype(np.int32)


_layer_inputs = jax.jit(layer_inputs, static_argnums=1)


def layer_input_stds(model) -> tuple[float, ...]:
    """Per layer l, the clipped std of the hidden states entering layer l on the public
    text; l = 0 is the word-embedding matrix's std (unclipped, as BBTv2)."""
    ids = public_token_ids(model.tokenizer, model.cfg.vocab_size)
    inputs = np.asarray(_layer_inputs(model.params, model.cfg, ids)[0])
    if model.cfg.embed_scale:  # in the units the deep prompts are drawn in
        inputs = inputs / float(np.sqrt(model.cfg.hidden_size))
    embed_std = float(jnp.std(model.params["embed"].astype(jnp.float32)))
    return (embed_std, *(clipped_std(inputs[l]) for l in range(1, inputs.shape[0])))
