"""Choosing the compute dtype: `dtype="auto"` picks bfloat16 where the chip runs it natively.

bfloat16 means bf16 matmul *inputs* with float32 accumulation and a float32 residual stream,
norms, RoPE and softmax (`block.py`). It pays only where the hardware has bf16 dot units: GPUs,
TPUs, and x86 CPUs with AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`); elsewhere bf16 is
emulated and slower, so "auto" resolves to float32. An explicit dtype always wins.
`resolve_dtype` takes backend and CPU flags as arguments, so the rule is tested without the
hardware.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib

import jax

DTYPES = ("float32", "bfloat16", "float16")
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DtypeChoice:
    """The resolved dtype name and why it was chosen (recorded in every result)."""

    dtype: str
    reason: str
    requested: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _cpuinfo(cpuinfo: str, prefixes: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of `prefixes`, if any."""
    path = pathlib.Path(cpuinfo)
    for line in path.read_text().splitlines() if path.exists() else ():
        if line.startswith(prefixes):
            return line.split(":", 1)[1]
    return None


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is absent, e.g. macOS)."""
    return frozenset((_cpuinfo(cpuinfo, ("flags", "Features")) or "").split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, for benchmark records ("unknown" where not readable)."""
    model = _cpuinfo(cpuinfo, ("model name",))
    return "unknown" if model is None else model.strip()


def machine_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """What a speed figure depends on, for every benchmark and run record: the CPU's model,
    its native bf16 flags and the core count (compare figures only within one machine)."""
    return {
        "cpu": cpu_model(cpuinfo),
        "bf16_flags": sorted(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS)),
        "cpu_count": os.cpu_count(),
    }


def resolve_dtype(
    requested: str = "auto", *, backend: str | None = None, flags: frozenset[str] | None = None
) -> DtypeChoice:
    """Resolve "auto" (or check an explicit name) for `backend` (default: JAX's default)."""
    if requested != "auto":
        if requested not in DTYPES:
            raise ValueError(f"unknown dtype {requested!r}; choose 'auto' or one of {DTYPES}")
        return DtypeChoice(requested, "explicitly requested", requested)
    backend = jax.default_backend() if backend is None else backend
    if backend in ("gpu", "cuda", "rocm", "tpu"):
        return DtypeChoice("bfloat16", f"{backend}: native bf16 matmul units", requested)
    if backend != "cpu":
        return DtypeChoice("float32", f"backend {backend!r}: bf16 speed unknown", requested)
    flags = cpu_flags() if flags is None else flags
    native = [f for f in BF16_CPU_FLAGS if f in flags]
    if native:
        return DtypeChoice("bfloat16", f"cpu with native bf16 ({', '.join(native)})", requested)
    return DtypeChoice(
        "float32", "cpu without amx_bf16/avx512_bf16: bf16 would be emulated", requested
    )


def choose_dtype(requested: str = "auto") -> DtypeChoice:
    """`resolve_dtype` on this machine, logged with its reason."""
    choice = resolve_dtype(requested)
    log.info("compute dtype %s (%s)", choice.dtype, choice.reason)
    return choice
