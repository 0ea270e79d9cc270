"""`key=value` config overrides: types, nesting, validation re-run, clear errors."""

import dataclasses

import pytest

from cbp_jax.overrides import apply_overrides


@dataclasses.dataclass(frozen=True)
class Inner:
    steps: int = 5
    lr: float = 1e-3


@dataclasses.dataclass(frozen=True)
class Outer:
    etas: tuple[float, ...] = (1.0, 2.0)
    seeds: tuple[int, ...] = (0,)
    name: str = "a"
    flag: bool = False
    eps: float | None = None
    size: int | None = None
    layers: tuple[int, ...] | None = None
    inner: Inner = Inner()

    def __post_init__(self):
        if self.inner.steps < 1:
            raise ValueError("steps must be >= 1")


def test_types_and_nesting():
    cfg = apply_overrides(
        Outer(), ["etas=10,40", "seeds=1,2,3", "name=b", "flag=true", "eps=8", "inner.steps=7"]
    )
    assert cfg == Outer((10.0, 40.0), (1, 2, 3), "b", True, 8.0, inner=Inner(7, 1e-3))
    assert isinstance(cfg.seeds[0], int) and isinstance(cfg.etas[0], float)
    assert apply_overrides(cfg, ["eps=none"]).eps is None


def test_a_none_field_is_parsed_by_its_annotation():
    """`int | None` set from None is an int (a float here once broke slicing in POST)."""
    cfg = apply_overrides(Outer(), ["size=200", "layers=0,29", "eps=8"])
    assert cfg.size == 200 and type(cfg.size) is int
    assert cfg.layers == (0, 29) and all(type(x) is int for x in cfg.layers)
    assert type(cfg.eps) is float
    with pytest.raises(ValueError, match="not a int"):
        apply_overrides(Outer(), ["size=2.5"])


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="no field 'epochs'"):
        apply_overrides(Outer(), ["epochs=3"])
    with pytest.raises(ValueError, match="not a int"):
        apply_overrides(Outer(), ["inner.steps=x"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(Outer(), ["steps"])
    with pytest.raises(ValueError, match="not a nested config"):
        apply_overrides(Outer(), ["name.x=1"])
    with pytest.raises(ValueError, match="steps must be"):  # __post_init__ runs again
        apply_overrides(Outer(), ["inner.steps=0"])


def test_all_changes_validated_together():
    @dataclasses.dataclass(frozen=True)
    class Pair:
        a: int = 1
        b: int = 1

        def __post_init__(self):
            if self.a != self.b:
                raise ValueError("a must equal b")

    assert apply_overrides(Pair(), ["a=2", "b=2"]) == Pair(2, 2)
    with pytest.raises(ValueError, match="a must equal b"):
        apply_overrides(Pair(), ["a=2"])
