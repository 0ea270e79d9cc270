"""Task entry points over the registry of shipped tasks (sources.py: templates, label words,
pools).

`get_task(name)` gives the TaskSpec; `load_examples(name, split)` reads the task's "train"
pool, "test" pool or "all" through its TFDS builder. A name may also be the path of a custom
task config (see custom.py), in any process; `run_key(name)` names its run directories.
"""

from __future__ import annotations

import dataclasses

from cbp_jax.data import builders, custom
from cbp_jax.data.batching import candidate_ids
from cbp_jax.data.sources import SOURCES, TASKS, Source
from cbp_jax.data.spec import TaskSpec


def task_names() -> list[str]:
    """The shipped tasks."""
    return list(TASKS)


def domain_tasks(domain: str, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Shipped tasks of one domain (CBP stage 1 trains on them), minus `exclude`."""
    names = tuple(n for n, t in TASKS.items() if t.domain == domain)
    if not names:
        known = sorted({t.domain for t in TASKS.values()})
        raise KeyError(f"unknown domain {domain!r}; known: {known}")
    unknown = set(exclude) - set(names)
    if unknown:
        raise KeyError(f"cannot exclude {sorted(unknown)}: not in domain {domain} {names}")
    kept = tuple(n for n in names if n not in exclude)
    if not kept:
        raise ValueError(f"excluding {exclude} leaves domain {domain} without tasks")
    return kept


def _resolve(name: str) -> tuple[TaskSpec, Source]:
    if name in TASKS:
        return TASKS[name], SOURCES[name]
    if not custom.is_config_path(name):
        raise KeyError(
            f"unknown task {name!r}; shipped tasks: {task_names()}; a task of your own is "
            "named by the path of its config file, ending in .json (see examples/tasks/)"
        )
    task = custom.load_custom_task(name)
    return task.spec, task.source


def run_key(name: str) -> str:
    """The directory name of a task's runs: a shipped task's name, or a custom task's name
    plus a hash of its config and data (never its path, which may be absolute or ../)."""
    if name in TASKS:
        return name
    _resolve(name)  # the same error for an unknown name
    return custom.load_custom_task(name).run_key()


def get_task(name: str, *, max_chars: int | None = None) -> TaskSpec:
    """The task's spec; `max_chars` overrides its truncation budget for long fields."""
    spec = _resolve(name)[0]
    return spec if max_chars is None else dataclasses.replace(spec, max_chars=max_chars)


def load_examples(name: str, split: str, data_dir=None, *, cache_dir=None) -> list[dict]:
    """Examples of split "train" (train pool), "test" (test pool) or "all", via TFDS.

    Each example is a dict with "id", the task's text fields and an int "label".
    data_dir: the task files (default: CBP_JAX_DATA_DIR, then the repo's data/);
    cache_dir: where built TFDS files go (default: CBP_JAX_TFDS_DIR, then ~/.cache).
    """
    return builders.load_split(_resolve(name)[1], split, data_dir, cache_dir)


def check_first_tokens(task: TaskSpec, tokenizer) -> None:
    """Raise if two classes' label words start with the same token (scores would tie)."""
    ids = candidate_ids(tokenizer, task.label_words)
    owner: dict[int, tuple[int, str]] = {}
    for c, (words, row) in enumerate(zip(task.label_words, ids, strict=False)):
        for w, tok in zip(words, row, strict=False):
            tok = int(tok)
            if tok in owner and owner[tok][0] != c:
                raise ValueError(
                    f"task {task.name}: label words {owner[tok][1]!r} (class {owner[tok][0]}) "
                    f"and {w!r} (class {c}) share their first token {tok}"
                )
            owner[tok] = (c, w)
