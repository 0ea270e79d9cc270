"""Field checks for frozen dataclass configs: a ValueError naming "<Class>.<field>"."""

from __future__ import annotations


def _fail(cfg, name: str, what: str):
    value = getattr(cfg, name)
    return ValueError(f"{type(cfg).__name__}.{name} must be {what}, got {value!r}")


def positive_ints(cfg, *names: str) -> None:
    """Raise unless each field is an int (not a bool) > 0."""
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise _fail(cfg, name, "a positive int")


def positive(cfg, *names: str) -> None:
    """Raise unless each field is a number > 0."""
    for name in names:
        if not getattr(cfg, name) > 0:
            raise _fail(cfg, name, "> 0")


def one_of(cfg, name: str, choices: tuple) -> None:
    """Raise unless the field's value is one of `choices`."""
    if getattr(cfg, name) not in choices:
        raise _fail(cfg, name, f"one of {choices}")
