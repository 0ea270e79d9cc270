"""Test helpers: GGUF tensor bytes for every quantization type the loader accepts.

`gguf.quants.quantize` implements Q4_0/Q4_1/Q5_0/Q8_0/F16/BF16 but not the k-quants; for
Q4_K, Q5_K and Q6_K we build raw blocks byte by byte, either random (with small finite
super-block scales) or with every field set to one known value so the decoded numbers are
known in closed form.
"""

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
K_BLOCK = 256
K_BYTES = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}


def _f16(x) -> np.ndarray:
    return np.frombuffer(np.float16(x).tobytes(), np.uint8)


def random_kquant(rng, kind, rows: int, cols: int) -> np.ndarray:
    """rows x bytes of random k-quant blocks, super-block scales set so |values| <~ 0.1."""
    if cols % K_BLOCK:
        raise ValueError(f"k-quant rows need a multiple of {K_BLOCK} values, got {cols}")
    n = rows * cols // K_BLOCK
    blocks = rng.integers(0, 256, (n, K_BYTES[kind]), dtype=np.uint8)
    if kind == Q.Q6_K:  # d * int8 scale * (q - 32)
        blocks[:, -2:] = _f16(2e-5)  # ql, qh, scales (int8), then d
    else:
        blocks[:, 0:2], blocks[:, 2:4] = _f16(1e-4), _f16(1e-4)  # d, dmin; 6-bit scales
    return blocks.reshape(rows, -1)


def constant_kquant(kind, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw bytes, the float32 values they decode to), from fields chosen by hand.

    Q4_K / Q5_K: d = 0.5, dmin = 0.25, all 8 sub-block scales 3 and mins 2, low nibbles 1,
    high nibbles 4 (Q5_K: fifth bits all 1). Each 64-value chunk is 32 low-nibble values
    then 32 high-nibble values: d * 3 * q - dmin * 2.
    Q6_K: d = 0.5, all 16 scales 2, ql nibbles 1, qh 2-bit fields 1: q = (1 | 1 << 4) - 32.
    """
    n = rows * cols // K_BLOCK
    if kind in (Q.Q4_K, Q.Q5_K):
        scales = np.array([3] * 4 + [2] * 4 + [3 | 2 << 4] * 4, np.uint8)
        parts = [_f16(0.5), _f16(0.25), scales]
        high = 0
        if kind == Q.Q5_K:
            parts.append(np.full(32, 0xFF, np.uint8))
            high = 16
        parts.append(np.full(128, 0x41, np.uint8))
        low_v, high_v = 0.5 * 3 * (1 + high) - 0.5, 0.5 * 3 * (4 + high) - 0.5
        chunk = np.r_[np.full(32, low_v), np.full(32, high_v)]
    else:
        parts = [np.full(128, 0x11, np.uint8), np.full(64, 0x55, np.uint8)]
        parts += [np.full(16, 2, np.uint8), _f16(0.5)]
        chunk = np.full(64, 0.5 * 2 * ((1 | 1 << 4) - 32))
    block = np.concatenate(parts)
    assert block.size == K_BYTES[kind]
    raw = np.tile(block, (n, 1)).reshape(rows, -1)
    values = np.tile(chunk, rows * cols // 64).reshape(rows, cols).astype(np.float32)
    return raw, values


def encode(rng, kind, w_OxI: np.ndarray) -> np.ndarray:
    """Bytes (or float array) of `w` in `kind`; k-quants get random blocks instead."""
    if kind == Q.F32:
        return w_OxI.astype(np.float32)
    if kind in K_BYTES:
        return random_kquant(rng, kind, *w_OxI.shape)
    return gguf.quants.quantize(w_OxI.astype(np.float32), kind)
