"""`key=value` overrides of frozen dataclass configs, for experiment scripts' `--set` flags.

`apply_overrides(cfg, ["epochs=10", "etas=10,40", "tune.prompt_len=20"])` returns a new
config (via `dataclasses.replace`, so `__post_init__` validation runs again). A dotted key
reaches into a nested dataclass field. Values are parsed by the type of the field's current
value: int, float, bool (true/false/1/0), str, "none" for None, and tuples
(comma-separated, elements parsed like the current first element, float if it is empty).
A field whose current value is None is parsed by its annotation (`int | None` -> int).
An unknown key or an unparsable value raises ValueError naming it.
`check_positive(cfg, names)` is the field check those configs' `__post_init__` share.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse_scalar(text: str, like: Any, key: str) -> Any:
    text = text.strip()
    if text.lower() == "none":
        return None
    try:
        if isinstance(like, bool):
            return _BOOLS[text.lower()]
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float) or like is None:
            return float(text)
    except (KeyError, ValueError):
        raise ValueError(f"override {key}={text!r}: not a {type(like).__name__}") from None
    return text


def _like_none(cls: type, name: str) -> Any:
    """A sample value of the non-None type of `name`'s annotation (float when unknown)."""
    try:
        hint = typing.get_type_hints(cls).get(name)
    except (NameError, TypeError):  # an annotation that does not resolve here
        return 0.0
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    samples = {int: 0, float: 0.0, str: "", bool: False}
    if typing.get_origin(hint) is tuple:  # tuple[int, ...] | None
        return (samples.get((typing.get_args(hint) or (float,))[0], 0.0),)
    return samples.get(hint, 0.0)


def _parse(text: str, like: Any, key: str) -> Any:
    if isinstance(like, tuple):
        elem = like[0] if like else 0.0
        return tuple(_parse_scalar(t, elem, key) for t in text.split(",") if t.strip())
    return _parse_scalar(text, like, key)


def _replace(cfg: Any, items: list[tuple[list[str], str, str]]) -> Any:
    """One `dataclasses.replace` per config level, so validation sees all changes at once."""
    names = {f.name for f in dataclasses.fields(cfg)}
    changes: dict[str, Any] = {}
    nested: dict[str, list] = {}
    for path, text, key in items:
        if path[0] not in names:
            raise ValueError(
                f"override {key!r}: {type(cfg).__name__} has no field {path[0]!r} "
                f"(fields: {', '.join(sorted(names))})"
            )
        current = getattr(cfg, path[0])
        if len(path) > 1:
            if not dataclasses.is_dataclass(current):
                raise ValueError(f"override {key!r}: field {path[0]!r} is not a nested config")
            nested.setdefault(path[0], []).append((path[1:], text, key))
        else:
            like = _like_none(type(cfg), path[0]) if current is None else current
            changes[path[0]] = _parse(text, like, key)
    for name, sub in nested.items():
        changes[name] = _replace(getattr(cfg, name), sub)
    return dataclasses.replace(cfg, **changes)


def apply_overrides(cfg: Any, items: Iterable[str]) -> Any:
    """`cfg` with every `key=value` in `items` applied (a later repeat of a key wins)."""
    parsed = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        parsed.append((key.strip().split("."), text, key.strip()))
    return _replace(cfg, parsed) if parsed else cfg
