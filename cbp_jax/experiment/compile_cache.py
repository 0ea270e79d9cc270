"""Compilation paid once: JAX's persistent compilation cache, and counting what compiles.

`enable_compile_cache()` points JAX's persistent cache at a directory under checkpoints/
(every compiled program is reused by later processes on the same machine and jaxlib);
`CompileStats` counts backend compilations, their seconds and cache hits, so a table can
report compilations and compile vs run seconds.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
from jax import monitoring

DEFAULT_CACHE = pathlib.Path("checkpoints/jax_cache")
_COMPILE = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"


def enable_compile_cache(path: str | pathlib.Path = DEFAULT_CACHE) -> pathlib.Path:
    """Turn on the persistent cache at `path` for every program (no size or time floor)."""
    path = pathlib.Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


@dataclasses.dataclass
class CompileStats:
    """Backend compilations seen since `start()` (process-wide listeners; stop() detaches)."""

    compilations: int = 0
    compile_seconds: float = 0.0
    cache_hits: int = 0

    def _duration(self, event: str, seconds: float, **_):
        if event == _COMPILE:
            self.compilations += 1
            self.compile_seconds += seconds

    def _event(self, event: str, **_):
        if event == _HIT:
            self.cache_hits += 1

    def start(self) -> CompileStats:
        monitoring.register_event_duration_secs_listener(self._duration)
        monitoring.register_event_listener(self._event)
        return self

    def stop(self) -> dict:
        monitoring.unregister_event_duration_listener(self._duration)
        monitoring.unregister_event_listener(self._event)
        return dataclasses.asdict(self)
