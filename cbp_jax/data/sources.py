"""The shipped tasks: each one's prompt template and label words, and which shipped files
form its train pool and test pool (see pools.py for the rules).

Only evaluation splits are shipped, so the pools are carved out of them once, the same way
on every machine and for every seed:

Single files, hash-split half/half per class (pools.py rule 4), train / test:
  sst2 (GLUE dev, 872) 436 / 436; ag_news (test.csv, 7,600) 3,800 / 3,800;
  boolq (val, 3,270) 1,636 / 1,634; piqa (valid, 1,838) 919 / 919; copa (val, 100) 51 / 49;
  arc_challenge (Challenge test, 1,165 of 1,172 with 4 options) 584 / 581;
  medqa_usmle (test, 1,273) 638 / 635;
  financial_phrasebank (Sentences_50Agree, 4,846 less 6 repeats and 4 copies with
  conflicting labels = 4,836) 2,419 / 2,417.
Separate files, train / test:
  arc_easy: ARC-Easy-Dev (567 of 570 with 4 options) / ARC-Easy-Test (2,365 of 2,376);
  pubmedqa: the 500 PQA-L ids outside the official test list / the official 500 test ids;
  mmlu_medical: dev + val (153 less 2 repeats and 19 questions that recur in test = 132) /
  test (1,089 less 78 questions repeated across subjects = 1,011).

The counts are asserted in tests/test_tasks.py. `load_examples(name, "all")` gives both pools
together; "dev" (sst2) and "validation" (boolq, piqa, copa) are accepted as names of the
whole shipped split, so `--split dev` keeps meaning all 872 SST-2 dev sentences. A task's
text fields (the duplicate-detection key) are its template's fields.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

from cbp_jax.data import readers
from cbp_jax.data.pools import Pools, make_pools
from cbp_jax.data.spec import TaskSpec

READER_VERSION = "1"  # bump when a reader or a pool rule changes what gets built
TEST_FRACTION = 0.5  # single-file tasks: share of each class that goes to the test pool


@dataclasses.dataclass(frozen=True)
class Source:
    """How to build one task's pools from files.

    files: every file read (relative to the data dir; absolute for custom tasks). Their
        checksums key the TFDS cache, so editing a file rebuilds the task.
    text_fields: the example's text (also the key for duplicate detection).
    extra_fields: other string fields kept with each example (e.g. MMLU's "subject").
    build: data dir (None for custom tasks) -> Pools.
    aliases: extra split names, e.g. {"dev": "all"}.
    params: anything else that changes the built data; part of the cache key.
    """

    name: str
    files: tuple[str, ...]
    text_fields: tuple[str, ...]
    num_classes: int
    build: Callable[[pathlib.Path | None], Pools]
    extra_fields: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    params: str = ""

    @property
    def string_fields(self) -> tuple[str, ...]:
        return ("id", *self.text_fields, *self.extra_fields)


def _shipped(spec: TaskSpec, files, read, *, split=True, aliases=(), extra=()):
    """(spec, Source): read(root) gives one file's examples, hash-split (`split`), or the
    (train, test) lists."""
    fields = spec.fields

    def build(root):
        if split:
            return make_pools(spec.name, fields, single=read(root), test_fraction=TEST_FRACTION)
        train, test = read(root)
        return make_pools(spec.name, fields, train=train, test=test)

    params = f"test_fraction={TEST_FRACTION}" if split else ""
    source = Source(
        spec.name, tuple(files), fields, spec.num_classes, build, extra, aliases, params
    )
    return spec, source


def _pubmedqa(root):
    examples, test_ids = readers.pubmedqa(root)
    test = [ex for ex in examples if ex["id"] in test_ids]
    return [ex for ex in examples if ex["id"] not in test_ids], test


def _mmlu_medical(root):
    train = readers.mmlu_medical(root, "dev") + readers.mmlu_medical(root, "val")
    return train, readers.mmlu_medical(root, "test")


MC4_TEMPLATE = "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:"
MC4_WORDS = (("A",), ("B",), ("C",), ("D",))
AB_WORDS = (("A",), ("B",))
_ALL = {"dev": (("dev", "all"),), "validation": (("validation", "all"),)}
_MMLU = tuple(
    f"mmlu_medical/{split}/{subject}_{split}.csv"
    for split in ("dev", "val", "test")
    for subject in readers.MMLU_SUBJECTS
)

_REGISTRY = [
    _shipped(
        TaskSpec("sst2", "Review: {sentence}\nSentiment (positive or negative):",
                 (("negative",), ("positive",)), "sentiment"),
        ["sst2/dev.jsonl"], readers.sst2, aliases=_ALL["dev"],
    ),
    _shipped(
        TaskSpec("ag_news", "Title: {title}\nArticle: {description}\n"
                 "Topic (World, Sports, Business or Technology):",
                 (("World",), ("Sports",), ("Business",), ("Technology", "Science")),
                 "sentiment"),  # grouped with sst2 in data/README.md
        ["ag_news/test.csv", "ag_news/classes.txt"], readers.ag_news,
    ),
    _shipped(
        TaskSpec("boolq", "Passage: {passage}\nQuestion: {question}?\nAnswer (yes or no):",
                 (("no",), ("yes",)), "commonsense", truncate_fields=("passage",)),
        ["boolq/val.jsonl"], readers.boolq, aliases=_ALL["validation"],
    ),
    _shipped(
        TaskSpec("piqa", "Goal: {goal}\nA. {A}\nB. {B}\nAnswer:", AB_WORDS, "commonsense"),
        ["piqa/valid.jsonl", "piqa/valid-labels.lst"], readers.piqa, aliases=_ALL["validation"],
    ),
    _shipped(
        TaskSpec("copa", "Premise: {premise}\nQuestion: What was the {question}?\nA. {A}\n"
                 "B. {B}\nAnswer:", AB_WORDS, "commonsense"),
        ["copa/val.jsonl"], readers.copa, aliases=_ALL["validation"],
    ),
    _shipped(
        TaskSpec("arc_easy", MC4_TEMPLATE, MC4_WORDS, "commonsense"),
        ["arc/ARC-Easy-Dev.jsonl", "arc/ARC-Easy-Test.jsonl"],
        lambda root: (readers.arc(root, "ARC-Easy-Dev.jsonl"),
                      readers.arc(root, "ARC-Easy-Test.jsonl")),
        split=False,
    ),
    _shipped(
        TaskSpec("arc_challenge", MC4_TEMPLATE, MC4_WORDS, "commonsense"),
        ["arc/ARC-Challenge-Test.jsonl"],
        lambda root: readers.arc(root, "ARC-Challenge-Test.jsonl"),
    ),
    _shipped(
        TaskSpec("pubmedqa", "Context: {context}\nQuestion: {question}\nAnswer (yes, no or maybe):",
                 (("yes",), ("no",), ("maybe",)), "medical", truncate_fields=("context",)),
        ["pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"], _pubmedqa, split=False,
    ),
    _shipped(
        TaskSpec("medqa_usmle", MC4_TEMPLATE, MC4_WORDS, "medical"), ["medqa_usmle/test.jsonl"],
        readers.medqa_usmle,
    ),
    _shipped(
        TaskSpec("mmlu_medical", MC4_TEMPLATE, MC4_WORDS, "medical"), _MMLU, _mmlu_medical,
        split=False, extra=("subject",),
    ),
    _shipped(
        TaskSpec("financial_phrasebank", "Sentence: {sentence}\n"
                 "Sentiment (negative, neutral or positive):",
                 (("negative",), ("neutral",), ("positive",)), "financial"),
        ["financial_phrasebank/Sentences_50Agree.txt"], readers.financial_phrasebank,
    ),
]  # fmt: skip
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec, _ in _REGISTRY}
SOURCES: dict[str, Source] = {source.name: source for _, source in _REGISTRY}
