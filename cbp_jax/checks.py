"""Field checks for frozen dataclass configs: a ValueError naming "<Class>.<field>"."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any


def _fail(cfg, name: str, what: str):
    value = getattr(cfg, name)
    return ValueError(f"{type(cfg).__name__}.{name} must be {what}, got {value!r}")


def check_positive(cfg: Any, names: Iterable[str] | None = None, *, number: bool = False) -> None:
    """Raise ValueError unless each field in `names` (default: all) of the dataclass `cfg` is
    a positive int (with `number`: a positive int or float); a bool never passes."""
    kind = "number" if number else "int"
    for name in [f.name for f in dataclasses.fields(cfg)] if names is None else names:
        value = getattr(cfg, name)
        typed = isinstance(value, (int, float) if number else int) and not isinstance(value, bool)
        if not (typed and value > 0):
            raise ValueError(
                f"{type(cfg).__name__}.{name} must be a positive {kind}, got {value!r}"
            )


def positive_ints(cfg, *names: str) -> None:
    """Raise unless each field is an int (not a bool) > 0."""
    check_positive(cfg, names)


def positive(cfg, *names: str) -> None:
    """Raise unless each field is a number > 0."""
    for name in names:
        if not getattr(cfg, name) > 0:
            raise _fail(cfg, name, "> 0")


def one_of(cfg, name: str, choices: tuple) -> None:
    """Raise unless the field's value is one of `choices`."""
    if getattr(cfg, name) not in choices:
        raise _fail(cfg, name, f"one of {choices}")
