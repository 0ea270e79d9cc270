"""Task registry: how each dataset becomes a prompt and a set of candidate answers.

A task is a template over an example's text fields plus, per class, one or more label words
(the verbalizer). Class scores are read at the position after the prompt, over the first
token of each label word.
"""

from __future__ import annotations

import dataclasses
import json

from cbp_jax.data.paths import data_dir


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A classification task as text: template + verbalizer.

    template: format string over the example's fields, e.g. "Review: {sentence}\\nSentiment:".
    label_words: per class, the words that name it; each word's first token is scored.
    """

    name: str
    template: str
    label_words: tuple[tuple[str, ...], ...]

    def __post_init__(self):
        if len(self.label_words) < 2 or any(not ws for ws in self.label_words):
            raise ValueError(f"task {self.name}: needs >= 2 classes, each with >= 1 label word")

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    def render(self, example: dict) -> str:
        try:
            return self.template.format(**example)
        except KeyError as e:
            raise KeyError(f"task {self.name}: template field {e} missing from example") from e


def read_sst2(split: str, root=None) -> list[dict]:
    """SST-2 (GLUE). Only the dev split is shipped; label 0 negative, 1 positive."""
    if split != "dev":
        raise ValueError(f"sst2: only the 'dev' split is shipped, got {split!r}")
    path = data_dir(root) / "sst2" / "dev.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"sentence": r["sentence"].strip(), "label": int(r["label"])} for r in rows]


TASKS = {
    "sst2": TaskSpec(
        "sst2",
        "Review: {sentence}\nSentiment (positive or negative):",
        (("negative",), ("positive",)),
    ),
}
READERS = {"sst2": read_sst2}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def load_examples(name: str, split: str, root=None) -> list[dict]:
    get_task(name)
    return READERS[name](split, root)
