"""CBP-Tuning's prompt generator G and its saved artifact (METHODS.md, CBP-Tuning).

    I(X, z) = mean_pool(Emb(X)) + A z            A in R^{D x r}, random and fixed, z in R^r
    p       = L_U(GeLU(L_D(I)))                  L_D: D -> m, L_U: m -> t*D
    p (t x D) is prepended to the input embeddings of X (an instance-dependent soft prompt).

Defaults: r = 500, m = 256, t = 10 (the paper's). Open choices made here (all config
fields): A ~ N(0, (a_scale * emb_std / sqrt(r))^2), so A z with z ~ N(0, I) has about the
scale of one embedding coordinate; L_D's kernel ~ N(0, 1 / (D * emb_std^2)), so the
bottleneck pre-activations are O(1) and GeLU is not stuck in its linear part; L_U's bias
starts as the embeddings of t random vocabulary tokens (prompt-tuning init) and its kernel
small (std up_init_scale * emb_std / sqrt(m)), so the first prompts are ordinary token
embeddings with a small input- and z-dependent part.

`generator_apply` is the pure map used under jit/vmap/grad; `PromptGenerator` is the NNX
face of the same arrays. A `GeneratorArtifact` (trained params + A + z0 + config + the
fingerprint of the model it was trained with) is saved and loaded with Orbax;
loading it for a different model raises `GeneratorMismatchError`. Only its `release()`
(r, z0 and an id, no weights) is meant for users.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

ARTIFACT_FORMAT = "cbp-generator/1"
PROBE_ROWS = 16  # embedding rows whose norms identify a model (see `model_fingerprint`)


class GeneratorMismatchError(ValueError):
    """A generator (or task vector) is used with a model or generator it was not made for."""


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
        for name in ("hidden_size", "task_dims", "bottleneck", "prompt_len", "init_vocab"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GeneratorConfig.{name} must be a positive int, got {value!r}")
        for name in ("a_scale", "down_init_scale", "up_init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GeneratorConfig.{name} must be positive")

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


# ---------------------------------------------------------------------------- identity


def model_fingerprint(model) -> dict:
    """What identifies the LLM a generator belongs to (a `LoadedModel`).

    Shapes must match exactly; the norms of a few fixed embedding rows must match to 1%
    (so the same model loaded in float32 or bfloat16 is the same model, another is not).
    """
    cfg, embed = model.cfg, model.params["embed"]
    rows = np.linspace(0, cfg.vocab_size - 1, PROBE_ROWS).astype(np.int64)
    probe = np.linalg.norm(np.asarray(embed[rows], np.float32), axis=1)
    return {
        "name": pathlib.Path(str(model.source)).name,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "num_heads": cfg.num_heads,
        "intermediate_size": cfg.intermediate_size,
        "embed_probe": [round(float(x), 6) for x in probe],
    }


def check_model(expected: dict, model_or_fingerprint, what: str = "generator") -> None:
    """Raise `GeneratorMismatchError` unless the model is the one `expected` describes."""
    got = (
        model_or_fingerprint
        if isinstance(model_or_fingerprint, dict)
        else model_fingerprint(model_or_fingerprint)
    )
    for key in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size"):
        if expected.get(key) != got.get(key):
            raise GeneratorMismatchError(
                f"this {what} was trained for model {expected.get('name')!r} "
                f"({key}={expected.get(key)}), not for {got.get('name')!r} ({key}={got.get(key)})"
            )
    if not np.allclose(expected["embed_probe"], got["embed_probe"], rtol=1e-2, atol=1e-6):
        raise GeneratorMismatchError(
            f"this {what} was trained for model {expected.get('name')!r}; {got.get('name')!r} "
            "has the same shapes but different embedding weights"
        )


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, np.float32))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True, eq=False)
class CBPRelease:
    """What the provider gives a user for stage 2: r, z0 and names. No weights."""

    task_dims: int
    z0_R: np.ndarray
    generator_id: str
    model_name: str
    tasks: tuple[str, ...]

    def __post_init__(self):
        z0 = np.asarray(self.z0_R, np.float32)
        if z0.shape != (self.task_dims,):
            raise ValueError(f"z0 must have shape ({self.task_dims},), got {z0.shape}")
        object.__setattr__(self, "z0_R", z0)


@dataclasses.dataclass(frozen=True, eq=False)
class GeneratorArtifact:
    """A trained generator: config, params, A, z0, the model's fingerprint, training info."""

    cfg: GeneratorConfig
    params: dict
    A_DxR: Any
    z0_R: Any
    model: dict
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_shapes(self.cfg, self.params, self.A_DxR)
        if tuple(np.shape(self.z0_R)) != (self.cfg.task_dims,):
            raise ValueError(
                f"z0 must have shape ({self.cfg.task_dims},), got {np.shape(self.z0_R)}"
            )

    @property
    def generator_id(self) -> str:
        """Content hash of params, A and z0: what a saved task vector records."""
        leaves = jax.tree.leaves(self.params)
        return _digest(*leaves, self.A_DxR, self.z0_R)

    def adapter_params(self) -> dict:
        """Provider-side arrays for `ScoringService(adapter_params=...)` (CBPGenerator)."""
        return {
            "params": jax.tree.map(jnp.asarray, self.params),
            "A_DxR": jnp.asarray(self.A_DxR),
        }

    def module(self) -> PromptGenerator:
        return PromptGenerator(self.cfg, state=self.adapter_params())

    def release(self) -> CBPRelease:
        return CBPRelease(
            self.cfg.task_dims,
            np.asarray(self.z0_R, np.float32),
            self.generator_id,
            str(self.model.get("name", "")),
            tuple(self.info.get("tasks", ())),
        )


# ---------------------------------------------------------------------------- Orbax I/O


def save_arrays(path: str | pathlib.Path, tree: Any, meta: dict) -> pathlib.Path:
    """Orbax-save a pytree under path/arrays and write path/meta.json (overwrites)."""
    path = pathlib.Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    tree = jax.tree.map(lambda x: np.asarray(x), tree)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "arrays", tree, force=True)
        ckptr.wait_until_finished()
    (path / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return path


def read_meta(path: str | pathlib.Path, fmt: str) -> dict:
    path = pathlib.Path(path).resolve()
    meta_file = path / "meta.json"
    if not meta_file.is_file() or not (path / "arrays").is_dir():
        raise FileNotFoundError(f"{path} is not a saved {fmt} (no meta.json and arrays/)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != fmt:
        raise ValueError(f"{path} holds {meta.get('format')!r}, not a {fmt!r}")
    return meta


def restore_arrays(path: str | pathlib.Path, target: Any) -> Any:
    """Restore path/arrays into the structure, shapes and dtypes of `target`."""
    path = pathlib.Path(path).resolve()
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), target
    )
    with ocp.StandardCheckpointer() as ckptr:
        out = ckptr.restore(path / "arrays", abstract)
    return jax.tree.map(np.asarray, out)


def save_generator(path: str | pathlib.Path, artifact: GeneratorArtifact) -> pathlib.Path:
    """Save params + A + z0 (Orbax) and config + model fingerprint + info (JSON)."""
    tree = {"params": artifact.params, "A_DxR": artifact.A_DxR, "z0_R": artifact.z0_R}
    meta = {
        "format": ARTIFACT_FORMAT,
        "config": dataclasses.asdict(artifact.cfg),
        "model": artifact.model,
        "info": artifact.info,
        "generator_id": artifact.generator_id,
    }
    return save_arrays(path, tree, meta)


def load_generator(path: str | pathlib.Path, expected_model=None) -> GeneratorArtifact:
    """Load a saved generator; with `expected_model` (a LoadedModel or fingerprint dict),
    raise `GeneratorMismatchError` before reading any array if it belongs to another model."""
    meta = read_meta(path, ARTIFACT_FORMAT)
    if expected_model is not None:
        check_model(meta["model"], expected_model)
    cfg = GeneratorConfig(**meta["config"])
    zeros = lambda shape: np.zeros(shape, np.float32)  # noqa: E731
    target = {
        "params": jax.tree.map(zeros, cfg.param_shapes(), is_leaf=lambda x: isinstance(x, tuple)),
        "A_DxR": zeros((cfg.hidden_size, cfg.task_dims)),
        "z0_R": zeros((cfg.task_dims,)),
    }
    tree = restore_arrays(path, target)
    artifact = GeneratorArtifact(
        cfg, tree["params"], tree["A_DxR"], tree["z0_R"], meta["model"], meta["info"]
    )
    if artifact.generator_id != meta["generator_id"]:
        raise ValueError(f"{path}: arrays do not match the recorded generator id (corrupt?)")
    return artifact
