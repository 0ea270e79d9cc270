"""The README's code works as written: every `cbp_jax` name its Python blocks import
exists, every `cbp-jax VERB` it shows is a verb of the command line, every file it links
to exists, and it stays short (results live on experiments/results/README.md)."""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

from cbp_jax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_blocks_import_what_exists():
    for block in _blocks("python"):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("cbp_jax"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_shown_verbs_exist():
    sub = next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices)
    shown = set(re.findall(r"cbp-jax ([a-z][a-z-]+)", README))
    assert shown and shown <= set(sub.choices), shown - set(sub.choices)


def test_links_exist_and_it_stays_short():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        assert (ROOT / target).exists(), target
    assert len(README.splitlines()) <= 200
    assert "make demo" in README and "make test" in README
