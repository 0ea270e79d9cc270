"""GGUF tensor dequantization to float32 numpy, limited to the types we have tested.

`gguf.quants.dequantize` knows many block formats; we accept only the ones the packaged
models and common Qwen2.5 / Gemma GGUFs use and that tests/test_qwen2_gguf.py checks on tiny
written files. Anything else raises `UnsupportedQuantError` naming the tensor and its type
instead of trusting an untested decoder.
"""

from __future__ import annotations

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
SUPPORTED = (
    Q.F32,
    Q.F16,
    Q.BF16,
    Q.Q4_0,
    Q.Q4_1,
    Q.Q5_0,
    Q.Q8_0,
    Q.Q4_K,
    Q.Q5_K,
    Q.Q6_K,
)


class UnsupportedQuantError(ValueError):
    """A GGUF tensor is stored in a quantization type we do not decode."""


def dequantize_tensor(tensor) -> np.ndarray:
    """A `GGUFReader` tensor as float32 in row-major [out, in] (HF) order."""
    kind = tensor.tensor_type
    if kind not in SUPPORTED:
        name = getattr(kind, "name", str(kind))
        raise UnsupportedQuantError(
            f"GGUF tensor {tensor.name!r} has unsupported quantization type {name}; "
            f"supported: {[t.name for t in SUPPORTED]}"
        )
    w = gguf.quants.dequantize(tensor.data, kind).astype(np.float32, copy=False)
    return w.reshape(tuple(int(n) for n in reversed(tensor.shape)))
