"""CBP-Tuning's prompt generator G (docs/methods.md, CBP-Tuning).

    I(X, z) = mean_pool(Emb(X)) + A z            A in R^{D x r}, random and fixed, z in R^r
    p       = L_U(GeLU(L_D(I)))                  L_D: D -> m, L_U: m -> t*D
    p (t x D) is prepended to the input embeddings of X (an instance-dependent soft prompt).

Defaults: r = 500, m = 256, t = 10 (the paper's). Open choices made here (config fields):
A ~ N(0, (a_scale * emb_std / sqrt(r))^2), so A z with z ~ N(0, I) has about the scale of
one embedding coordinate; L_D's kernel ~ N(0, 1 / (D * emb_std^2)), so the bottleneck
pre-activations are O(1); L_U's bias starts as the embeddings of t random vocabulary tokens
(prompt-tuning init) and its kernel small (std up_init_scale * emb_std / sqrt(m)), so the
first prompts are ordinary token embeddings with a small input- and z-dependent part.
`generator_apply` is the pure map (jit/vmap/grad); `PromptGenerator` its NNX face; the saved
form is `artifact.GeneratorArtifact`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from cbp_jax.checks import check_positive


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Sizes and init of G. hidden_size: the LLM's D; task_dims: r; bottleneck: m;
    prompt_len: t; a_scale, down_init_scale, up_init_scale: init scales (module docstring);
    init_vocab: L_U's bias starts from embeddings of random ids below this."""

    hidden_size: int
    task_dims: int = 500
    bottleneck: int = 256
    prompt_len: int = 10
    a_scale: float = 1.0
    down_init_scale: float = 1.0
    up_init_scale: float = 0.1
    init_vocab: int = 5000

    def __post_init__(self):
        check_positive(self, ("hidden_size", "task_dims", "bottleneck", "prompt_len", "init_vocab"))
        check_positive(self, ("a_scale", "down_init_scale", "up_init_scale"), number=True)

    def param_shapes(self) -> dict:
        d, m, td = self.hidden_size, self.bottleneck, self.prompt_len * self.hidden_size
        return {"down": {"kernel": (d, m), "bias": (m,)}, "up": {"kernel": (m, td), "bias": (td,)}}


def generator_apply(gen_params, A_DxR, pooled_BxD, z_R):
    """Soft prompts B x T x D for one task vector z_R (p = L_U(GeLU(L_D(pool + A z))))."""
    d = A_DxR.shape[0]
    if pooled_BxD.shape[-1] != d or z_R.shape != (A_DxR.shape[1],):
        raise ValueError(
            f"generator expects pooled B x {d} and z of shape ({A_DxR.shape[1]},), "
            f"got {pooled_BxD.shape} and {z_R.shape}"
        )
    input_BxD = pooled_BxD.astype(jnp.float32) + A_DxR @ z_R.astype(jnp.float32)
    down, up = gen_params["down"], gen_params["up"]
    hidden_BxM = jax.nn.gelu(input_BxD @ down["kernel"] + down["bias"])
    prompt_BxTD = hidden_BxM @ up["kernel"] + up["bias"]
    return prompt_BxTD.reshape(pooled_BxD.shape[0], -1, d)


def init_generator(key, cfg: GeneratorConfig, embed_VxD) -> dict:
    """Fresh generator state {"params": trainable dict, "A_DxR": fixed projection}."""
    embed = jnp.asarray(embed_VxD, jnp.float32)
    if embed.ndim != 2 or embed.shape[1] != cfg.hidden_size:
        raise ValueError(
            f"embedding must be V x {cfg.hidden_size} for this generator, got {embed.shape}"
        )
    emb_std = float(jnp.std(embed))
    d, m, r, t = cfg.hidden_size, cfg.bottleneck, cfg.task_dims, cfg.prompt_len
    k_a, k_down, k_up, k_ids = jax.random.split(key, 4)
    a_std = cfg.a_scale * emb_std / r**0.5
    down_std = cfg.down_init_scale / (d**0.5 * emb_std)
    up_std = cfg.up_init_scale * emb_std / m**0.5
    ids_T = jax.random.randint(k_ids, (t,), 0, min(cfg.init_vocab, embed.shape[0]))
    params = {
        "down": {
            "kernel": down_std * jax.random.normal(k_down, (d, m), jnp.float32),
            "bias": jnp.zeros((m,), jnp.float32),
        },
        "up": {
            "kernel": up_std * jax.random.normal(k_up, (m, t * d), jnp.float32),
            "bias": embed[ids_T].reshape(t * d),
        },
    }
    return {"params": params, "A_DxR": a_std * jax.random.normal(k_a, (d, r), jnp.float32)}


class FixedProjection(nnx.Variable):
    """A: random, saved with the generator, never trained (not an `nnx.Param`)."""


class _Dense(nnx.Module):
    def __init__(self, arrays: dict):
        self.kernel = nnx.Param(jnp.asarray(arrays["kernel"]))
        self.bias = nnx.Param(jnp.asarray(arrays["bias"]))


class PromptGenerator(nnx.Module):
    """NNX module over the generator arrays; the math is `generator_apply`.

    Build from a key and the LLM's embedding (fresh init) or from a saved state.
    """

    def __init__(
        self,
        cfg: GeneratorConfig,
        *,
        rngs: nnx.Rngs | None = None,
        embed_VxD=None,
        state: dict | None = None,
    ):
        if state is None:
            if rngs is None or embed_VxD is None:
                raise ValueError("PromptGenerator needs rngs and embed_VxD, or a saved state")
            state = init_generator(rngs.params(), cfg, embed_VxD)
        check_shapes(cfg, state["params"], state["A_DxR"])
        self.cfg = cfg
        self.down = _Dense(state["params"]["down"])
        self.up = _Dense(state["params"]["up"])
        self.A_DxR = FixedProjection(jnp.asarray(state["A_DxR"]))

    def params(self) -> dict:
        """The trainable params as a plain dict (what `generator_apply` takes)."""
        return nnx.to_pure_dict(nnx.state(self, nnx.Param))

    def state(self) -> dict:
        """{"params", "A_DxR"}: what the provider's `CBPGenerator` adapter takes."""
        return {"params": self.params(), "A_DxR": self.A_DxR[...]}

    def __call__(self, pooled_BxD, z_R):
        return generator_apply(self.params(), self.A_DxR[...], pooled_BxD, z_R)


def check_shapes(cfg: GeneratorConfig, params: dict, A_DxR) -> None:
    got = jax.tree.map(lambda x: tuple(x.shape), params)
    want = cfg.param_shapes()
    a_want = (cfg.hidden_size, cfg.task_dims)
    if got != want or tuple(A_DxR.shape) != a_want:
        raise ValueError(
            f"generator arrays do not match its config: params {got} (want {want}), "
            f"A {tuple(A_DxR.shape)} (want {a_want})"
        )
